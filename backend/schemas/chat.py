"""Chat with the loaded model: Orchard's own ``/chat`` and the OpenAI-compatible ``/v1`` shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(max_length=1_000_000)


class SamplingParams(BaseModel):
    """How to generate. Temperature 0 means greedy decoding (the same reply every time)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int | None = Field(None, ge=1, le=32768, description="Default: ORCHARD_CHAT_MAX_NEW_TOKENS.")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1, le=1000, description="Sample from the k likeliest tokens only.")
    repetition_penalty: float = Field(1.0, gt=0, le=3, description="Above 1 discourages repeating tokens.")
    stop: list[str] = Field(default_factory=list, max_length=8, description="Stop before any of these texts.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Same seed, same settings: same reply.")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: list[str]) -> list[str]:
        if any(not s for s in stop):
            raise ValueError("stop sequences must not be empty")
        return stop


class Grounding(BaseModel):
    """Answer from a document collection: its passages go into the prompt, with an instruction to cite them."""

    collection_id: str | None = Field(
        None, max_length=100, description="A document collection (/rag/collections) to answer from."
    )
    passages: int | None = Field(
        None,
        ge=1,
        le=50,
        description="Passages to retrieve (default ORCHARD_RAG_TOP_K); the whole collection is "
        "used instead when it fits comfortably in the model's context. (top_k is the sampling setting.)",
    )


class Citation(BaseModel):
    """A passage the model was given, numbered as the prompt numbered it (``[1]``...)."""

    index: int
    chunk_id: str
    document_id: str
    filename: str
    page: int | None
    heading: str | None
    text: str


class ChatRequest(SamplingParams, Grounding):
    """``POST /chat``: the conversation so far; the reply streams as Server-Sent Events unless ``stream`` is false."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = True


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    time_to_first_token_ms: float | None = Field(description="From the start of generation to the first token.")
    tokens_per_second: float | None = Field(description="Completion tokens per second after the first token.")
    queue_ms: float = Field(description="Time spent waiting for the model before generation started.")
    total_seconds: float


class ChatResponse(BaseModel):
    """A whole reply (``stream: false``), or the data of the final ``done`` event of a stream."""

    model: str
    message: ChatMessage
    finish_reason: FinishReason
    usage: Usage
    citations: list[Citation] = Field(
        default_factory=list, description="With collection_id: the passages the model was given to cite."
    )


class ChatToken(BaseModel):
    """The data of each ``token`` event: the next piece of the reply's text."""

    text: str


# --------------------------------------------------------------------------- OpenAI-compatible API


class OpenAIContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[OpenAIContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


StopText = Annotated[str, Field(min_length=1, max_length=200)]


class _OpenAIRequest(BaseModel):
    # Clients send fields we do not use (user, logprobs, ...): accept and ignore them, as other servers do.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    stop: StopText | Annotated[list[StopText], Field(max_length=8)] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Extensions most local servers accept.
    top_k: int | None = Field(None, ge=1, le=1000)
    repetition_penalty: float = Field(1.0, gt=0, le=3)

    def sampling(self, max_new_tokens: int | None) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=stop,
            seed=self.seed,
        )


class OpenAIChatRequest(_OpenAIRequest, Grounding):
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)

    def chat_messages(self) -> list[ChatMessage]:
        out = []
        for m in self.messages:
            if isinstance(m.content, list):
                text = "".join(p.text or "" for p in m.content if p.type == "text")
            else:
                text = m.content or ""
            role: Role = "system" if m.role == "developer" else "user" if m.role == "tool" else m.role
            out.append(ChatMessage(role=role, content=text))
        return out


class OpenAICompletionRequest(_OpenAIRequest):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: int | None = Field(16, ge=1, le=32768)  # OpenAI's default for completions
    echo: bool = False

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else "".join(self.prompt)


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "orchard"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIAssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class OpenAIChatChoice(BaseModel):
    index: int = 0
    message: OpenAIAssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class OpenAIChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[OpenAIChatChoice]
    usage: OpenAIUsage
    system_fingerprint: str | None = None
    citations: list[Citation] | None = Field(None, description="Orchard's: with collection_id, the passages given.")


class OpenAICompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class OpenAICompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[OpenAICompletionChoice]
    usage: OpenAIUsage


def openai_finish(reason: FinishReason) -> Literal["stop", "length"]:
    return "length" if reason == "length" else "stop"
