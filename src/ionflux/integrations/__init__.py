"""Integrations with external SaaS (Shopify, TikTok, Stripe, …): one package per provider."""
