"""Provider adapters: each speaks one provider's wire protocol and returns provider-neutral results."""
