"""Shopify Integration Service: app install (OAuth with expiring offline tokens), webhooks to the bus
(typed orders/products, PII redaction, uninstall and privacy topics), the rate-limited Admin API, and
resumable backfill/reconciliation into local tables.

Public surface for other services and agents: the HTTP API (`/v1/shopify/...`, see api.py), the events
`platform.shopify.events.*`, and `platform.services["shopify"].access_token(workspace_id, connection_id)`.
"""
