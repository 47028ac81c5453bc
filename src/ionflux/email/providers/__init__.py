"""Provider adapters: each turns `OutboundMessage`s into one protocol's calls and reports per-message outcomes."""
