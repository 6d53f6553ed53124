"""The `openai` backend: any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server ...), inference only.

`model.path` is the server's base URL, e.g. `http://localhost:8000/v1`; name the served model in the URL fragment
(`http://localhost:8000/v1#Qwen/Qwen2-VL-7B-Instruct`), else the server's first listed model is used. The API key
comes from `OPENAI_API_KEY` (servers that need none get "EMPTY"). Images travel as base64 PNG data URLs.

`score` needs the log-probabilities of prompt tokens, which only some servers return: it uses vLLM's chat extension
(`prompt_logprobs` with `add_generation_prompt: false`) and raises `ScoringUnsupported` when the server refuses.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ilearn.config import ModelConfig
from ilearn.errors import ILearnError, InvalidInput, require_package
from ilearn.models.base import Generation, Message

logger = logging.getLogger(__name__)

TIMEOUT_S = 120.0
"""Seconds to wait for one request."""


class ScoringUnsupported(ILearnError, NotImplementedError):
    """The server cannot return the log-probabilities of given text (most servers other than vLLM)."""


class RemoteModelError(ILearnError, RuntimeError):
    """The server could not be reached, or refused or failed a request."""


def image_data_url(image: Any) -> str:
    """A PIL image as a base64 PNG data URL (RGB)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Protocol messages -> OpenAI chat messages; a message with an image gets text + image_url parts."""
    if not messages:
        raise InvalidInput("at least one message is required")
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role not in {"system", "user", "assistant"}:
            raise InvalidInput(f"unknown message role {m.role!r}")
        if m.image is None:
            out.append({"role": m.role, "content": m.content})
        else:
            if m.role != "user":
                raise InvalidInput("only user messages may carry an image")
            out.append({"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(m.image)}},
                {"type": "text", "text": m.content},
            ]})
    return out


class OpenAIVisionLanguageModel:
    """Greedy chat (and, on vLLM, candidate scoring) against an OpenAI-compatible server."""

    name = "openai"
    restore: Callable[[], bool] | None = None
    """Called when the server answers 404 to a request for `model_name` (a vLLM replica that restarted has lost
    the adapters loaded at run time): True when it loaded the model again, and the request is sent once more."""

    def __init__(self, client: Any, model: str, config: ModelConfig | None = None, *, version: str = "base") -> None:
        self.client = client
        self.model_name = model
        self.config = config or ModelConfig(backend="openai")
        self.version = version

    @classmethod
    def from_url(cls, url: str, *, config: ModelConfig | None = None, api_key: str | None = None,
                 http_client: Any = None, timeout: float = TIMEOUT_S) -> OpenAIVisionLanguageModel:
        """Connect to the server at `url` (model named by the URL fragment, else the server's first model)."""
        require_package("openai", extra="openai")
        import openai

        parts = urlsplit(url or "")
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InvalidInput(f"the openai backend needs model.path = an http(s) base URL, not {url!r}")
        base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        client = openai.OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                               timeout=timeout, max_retries=1, http_client=http_client)
        model = parts.fragment
        if not model:
            served = _call(lambda: client.models.list().data, base_url)
            if not served:
                raise RemoteModelError(f"the server at {base_url} lists no models; name one as {base_url}#MODEL")
            model = served[0].id
            logger.info("using model %s, the first served by %s", model, base_url)
        return cls(client, model, config)

    # -- the protocol ---------------------------------------------------------------------------------------
    def generate(self, messages: Sequence[Message], *, max_new_tokens: int | None = None,
                 avoid: Sequence[str] = ()) -> Generation:
        """Greedy reply to the conversation (the last message is the user's); `avoid`: rejected replies, which
        the server is told not to give again."""
        if avoid:
            note = "The user said these answers are wrong, do not give them again: " + "; ".join(avoid)
            messages = [Message("system", note), *messages]
        chat = to_openai_messages(messages)
        if chat[-1]["role"] == "assistant":
            raise InvalidInput("the last message must be the user's")
        start = time.perf_counter()
        response = self._create(chat, max_tokens=max_new_tokens or self.config.max_new_tokens, temperature=0.0)
        if not response.choices:
            raise RemoteModelError(f"the server returned no choices for model {self.model_name}")
        text = (response.choices[0].message.content or "").strip()
        usage = response.usage
        return Generation(text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                          completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                          seconds=time.perf_counter() - start)

    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        """Summed log-probability of each candidate as the assistant reply, from the server's prompt log-probs.

        Each candidate is sent as a finished assistant turn; the tokens after the prompt (the reply, its end-of-turn
        token and whatever the template writes after it) are summed. One request for the prompt, one per candidate.
        """
        if not candidates:
            return []
        chat = to_openai_messages(messages)
        if chat[-1]["role"] == "assistant":
            raise InvalidInput("the last message must be the user's")
        prompt_len = len(self._prompt_logprobs(chat, add_generation_prompt=True))
        scores = []
        for candidate in candidates:
            logprobs = self._prompt_logprobs([*chat, {"role": "assistant", "content": candidate}],
                                             add_generation_prompt=False)
            if len(logprobs) <= prompt_len:
                raise RemoteModelError("the server's prompt with the reply is not longer than the prompt alone")
            scores.append(float(sum(logprobs[prompt_len:])))
        return scores

    # -- requests -------------------------------------------------------------------------------------------
    def _create(self, chat: list[dict[str, Any]], **kwargs: Any) -> Any:
        def send() -> Any:
            return _call(lambda: self.client.chat.completions.create(model=self.model_name, messages=chat, **kwargs),
                         str(self.client.base_url))

        try:
            return send()
        except RemoteModelError as exc:
            if getattr(exc, "status_code", None) != 404 or self.restore is None or not self.restore():
                raise
        return send()

    def _prompt_logprobs(self, chat: list[dict[str, Any]], *, add_generation_prompt: bool) -> list[float]:
        """The log-prob of every prompt token (vLLM's `prompt_logprobs`); the first token counts as 0."""
        extra = {"prompt_logprobs": 0, "add_generation_prompt": add_generation_prompt}
        try:
            response = self._create(chat, max_tokens=1, temperature=0.0, extra_body=extra)
        except RemoteModelError as exc:
            if getattr(exc, "status_code", None) in {400, 404, 422, 501}:
                raise ScoringUnsupported(f"the server refused prompt log-probs, so score() is unavailable: {exc}") \
                    from exc
            raise
        entries = (response.model_extra or {}).get("prompt_logprobs")
        if not entries:
            raise ScoringUnsupported(f"the server at {self.client.base_url} returns no prompt_logprobs (only vLLM "
                                     "does), so score() is unavailable; use the hf backend to score candidates")
        return [_chosen_logprob(entry) for entry in entries]


def _chosen_logprob(entry: dict[str, Any] | None) -> float:
    """vLLM gives, per prompt token, {token_id: {logprob, rank, decoded_token}}; the prompt's own token ranks first
    in insertion order (with prompt_logprobs=0 it is the only entry). None (the first token) counts as 0."""
    if not entry:
        return 0.0
    first = next(iter(entry.values()))
    return float(first["logprob"] if isinstance(first, dict) else first)


def _call(request, where: str) -> Any:
    """Run an SDK request, turning its errors into RemoteModelError (with the HTTP status when there is one)."""
    import openai

    try:
        return request()
    except openai.APIStatusError as exc:
        error = RemoteModelError(f"the server at {where} answered {exc.status_code}: {exc.message}")
        error.status_code = exc.status_code  # type: ignore[attr-defined]
        raise error from exc
    except openai.APIConnectionError as exc:
        raise RemoteModelError(f"the server at {where} could not be reached: {exc}") from exc


def load_openai(config: ModelConfig) -> OpenAIVisionLanguageModel:
    """The `openai` backend for the server at `config.path` (see the module docstring for the URL form)."""
    if not config.path:
        raise InvalidInput("the openai backend needs model.path: the server's base URL, e.g. http://localhost:8000/v1")
    return OpenAIVisionLanguageModel.from_url(config.path, config=config)
