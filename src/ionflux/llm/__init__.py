"""LLM Orchestration Service: one contract over OpenAI, Anthropic, DeepSeek and local models.

HTTP (workspace token as Bearer):
    POST /v1/llm/requests            the internal contract (contract.py): text_generation, embedding,
                                     speech_to_text, image_understanding; every outcome in the contract's shape
    POST /v1/chat/completions        OpenAI-compatible (stream: true as SSE), models as provider:model or alias
    POST /v1/embeddings, POST /v1/audio/transcriptions, GET /v1/models
    GET  /v1/llm/usage?since=&group_by=model|user     usage and cost per workspace
    GET  /v1/llm/limits; PUT /v1/llm/limits (admin)   budget per period, requests and tokens per minute

Configuration (settings.py): IONFLUX_{OPENAI,ANTHROPIC,DEEPSEEK}_BASE_URL / _API_KEY (platform keys; a
workspace's own key, PUT /v1/credentials/<provider>, overrides), IONFLUX_LLM_ALIASES, _FALLBACKS, _PRICES
(JSON), _DEFAULT_BUDGET_USD, _DEFAULT_RPM, _DEFAULT_TPM, _FETCH_ALLOW_NETWORKS (sandbox only).

Other services: `platform.services["llm"]` is an `interface.Embedder` (default model local:all-MiniLM-L6-v2,
384 dimensions).

Deployment note: budgets and per-minute limits are exact within one process (limits.py); run the LLM service
in one process (`ionflux serve --only llm`) or accept per-process limits. /v1/audio/transcriptions declares its own
body limit (26 MB: OpenAI's 25 MB of audio plus multipart framing) over the app-wide IONFLUX_MAX_BODY_BYTES.
"""
