"""What the client knows about each model (service id)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelInfo", "model_info"]

DEFAULT_MODEL = "ops-m2-encoder"


@dataclass(frozen=True)
class ModelInfo:
    """One model of the multimodal embedding service.

    ``dimensions`` is ``None`` for a service id the client does not know: such models
    still work, and the vector length is then checked for consistency within a call.
    ``combined_input`` says whether one input may carry both text and an image; the
    m2-encoder models silently ignore the image, so the client refuses such inputs.
    """

    service_id: str
    dimensions: int | None
    combined_input: bool
    known: bool = True


MODELS: dict[str, ModelInfo] = {
    m.service_id: m
    for m in (
        ModelInfo("ops-m2-encoder", 768, combined_input=False),
        ModelInfo("ops-m2-encoder-large", 1024, combined_input=False),
        ModelInfo("ops-gme-qwen2-vl-2b-instruct", 1536, combined_input=True),
        ModelInfo("ops-mm-embedding-v1-2b", 1536, combined_input=True),
    )
}


def model_info(service_id: str) -> ModelInfo:
    """The known facts of ``service_id``; permissive defaults for an unknown id."""
    info = MODELS.get(service_id)
    if info is not None:
        return info
    # Unknown id: allow combined inputs (the service decides) and learn the dimension.
    return ModelInfo(service_id, None, combined_input=True, known=False)
