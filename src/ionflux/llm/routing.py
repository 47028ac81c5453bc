"""Model names: `provider:model` (the agent blueprints' notation), aliases from configuration, fallback chains."""

from __future__ import annotations

from dataclasses import dataclass

from ionflux.core.errors import InvalidRequest
from ionflux.llm.settings import DEFAULT_EMBEDDING_MODEL, LLMSettings
from ionflux.llm.types import TaskType

PROVIDERS = ("openai", "anthropic", "deepseek", "local")


@dataclass(frozen=True)
class ModelRef:
    provider: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_model(name: str, *, field: str = "model") -> ModelRef:
    provider, sep, model = name.partition(":")
    if not sep or not provider or not model:
        raise InvalidRequest(
            f"{field}: name a model as provider:model (e.g. openai:gpt-4o) or by a configured alias, not {name!r}",
            field=field,
        )
    if provider not in PROVIDERS:
        raise InvalidRequest(f"{field}: unknown provider {provider!r}; known: {', '.join(PROVIDERS)}", field=field)
    return ModelRef(provider, model)


class ModelRouter:
    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.aliases = dict(settings.aliases)
        for alias, target in self.aliases.items():
            parse_model(target, field=f"IONFLUX_LLM_ALIASES[{alias}]")
        self.fallbacks: dict[str, tuple[ModelRef, ...]] = {}
        for source, chain in settings.fallbacks.items():
            head = self._resolve(source, field="IONFLUX_LLM_FALLBACKS")
            self.fallbacks[head.name] = tuple(self._resolve(n, field=f"IONFLUX_LLM_FALLBACKS[{source}]") for n in chain)
        self.defaults: dict[TaskType, str] = {
            "text_generation": settings.chat_model,
            "embedding": DEFAULT_EMBEDDING_MODEL,
            "speech_to_text": settings.transcription_model,
            "image_understanding": settings.vision_model,
        }

    def _resolve(self, name: str, *, field: str) -> ModelRef:
        name = name.strip()
        return parse_model(self.aliases.get(name, name), field=field)

    def resolve(
        self, model: str | None, *, provider: str | None = None, task: TaskType = "text_generation",
        field: str = "model",
    ) -> ModelRef:
        """The model a request names: an alias, `provider:model`, or `model` with a separate `provider`."""
        if not model:
            if provider:
                raise InvalidRequest("model: required when provider is given", field="model")
            return self._resolve(self.defaults[task], field=field)
        if provider and ":" not in model and model not in self.aliases:
            return parse_model(f"{provider}:{model}", field="provider")
        ref = self._resolve(model, field=field)
        if provider and provider != ref.provider:
            raise InvalidRequest(f"provider: {provider!r} contradicts the model {ref.name!r}", field="provider")
        return ref

    def chain(self, ref: ModelRef) -> list[ModelRef]:
        """`ref`, then its configured fallbacks (each once)."""
        out = [ref]
        for nxt in self.fallbacks.get(ref.name, ()):
            if nxt not in out:
                out.append(nxt)
        return out

    def known_models(self) -> list[str]:
        """Model ids worth listing on /v1/models: aliases and every configured model name."""
        names: set[str] = set(self.aliases)
        names.update(self.aliases.values())
        names.update(self.settings.prices)
        names.update(self.defaults.values())
        for head, chain in self.fallbacks.items():
            names.add(head)
            names.update(ref.name for ref in chain)
        return sorted(names)
