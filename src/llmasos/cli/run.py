"""``llmasos run MODEL [PROMPT]``: talk to a model, once or in an interactive chat.

When an LLMasOS server answers at the configured address, the CLI talks to it over
``/api/chat`` (the model is likely resident already); otherwise it starts the kernel in this
process. The interactive chat follows Ollama's REPL: history, ``/bye``, ``/set parameter``,
``/set system``, ``/show info``, ``/clear``, and ``\"\"\"`` for multi-line input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from llmasos.cli.remote import server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.models.modelfile import PARAMETER_TYPES
from llmasos.types import (
    OLLAMA_PARAMETER_FIELDS,
    ChatMessage,
    SamplingParams,
    parse_parameter_value,
)

# `/set parameter` takes the Modelfile's sampling parameters (not num_ctx, fixed at load).
REPL_PARAMETERS: dict[str, type] = {name: PARAMETER_TYPES[name] for name in OLLAMA_PARAMETER_FIELDS}

HELP = """Commands:
  /set parameter NAME VALUE   set a sampling parameter (temperature, top_k, num_predict ...)
  /set system TEXT            set the system prompt
  /show info                  show the model's details
  /clear                      forget the conversation
  /bye                        exit
Use \"\"\" to begin and end a multi-line message."""


STOPPED_NOTES = {
    "repetition_guard": "(stopped: the answer was repeating itself; the parameter "
    "repetition_guard=false lets it go on)",
    "default_max_tokens": "(stopped at the server's default_max_tokens; the parameter "
    "num_predict=N allows more)",
}
"""What the REPL says under an answer the kernel cut short, by ``stopped_by``."""


class ChatSession:
    """A conversation with one model, through a server or an in-process kernel."""

    def __init__(
        self,
        model: str,
        options: dict[str, Any],
        system: str | None,
        conversation: str | None = None,
    ) -> None:
        self.model = model
        self.options = options
        self.system = system
        self.messages: list[ChatMessage] = []
        self.url = server_url(state.settings)
        self.conversation: str | None = None
        """A stored conversation the turns are read from and appended to."""
        if conversation is not None:
            self.conversation = self.open_conversation(conversation)
            err_console.print(f"conversation {self.conversation}", highlight=False)
        self._loop = asyncio.new_event_loop()
        self._engine: Any = None
        self.stopped_by: str | None = None
        """What cut the last answer short (``repetition_guard`` ...), from the kernel."""

    def open_conversation(self, conversation: str) -> str:
        """The id of the stored conversation (a new one for ``new``); unknown ids fail."""
        if self.url is not None:
            from llmasos.cli.remote import call_server

            if conversation == "new":
                return str(call_server(state.settings, "POST", "/v1/conversations", json={})["id"])
            call_server(state.settings, "GET", f"/v1/conversations/{conversation}")
            return conversation
        from llmasos.cli.conversations import conversation_store

        with conversation_store(None) as (store, owner):
            if conversation == "new":
                return store.create(owner, {}).id
            return store.get(owner, conversation).id

    def close(self) -> None:
        if self._engine is not None:
            self._loop.run_until_complete(self._engine.close())
        self._loop.close()

    def ask(self, text: str) -> str:
        """Send a user message, stream the answer to the console, return it."""
        if self.conversation is None:
            self.messages.append({"role": "user", "content": text})
        chunks = []
        self.stopped_by = None
        try:
            for piece in self._stream(text):
                chunks.append(piece)
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
        except BaseException:
            if self.conversation is None:
                self.messages.pop()
            raise
        console.print()
        note = STOPPED_NOTES.get(self.stopped_by or "")
        if note:
            err_console.print(note, style="dim", highlight=False)
        answer = "".join(chunks)
        if self.conversation is None:
            self.messages.append({"role": "assistant", "content": answer})
        return answer

    def _conversation(self) -> list[ChatMessage]:
        if self.system is None:
            return list(self.messages)
        return [{"role": "system", "content": self.system}, *self.messages]

    def _stream(self, text: str) -> Iterator[str]:
        if self.url is not None:
            if self.conversation is not None:
                yield from self._stream_response(text)
            else:
                yield from self._stream_http()
            return
        if self.conversation is not None:
            iterator = self._stream_local_conversation(text)
        else:
            iterator = self._stream_local()
        while True:
            try:
                yield self._loop.run_until_complete(iterator.__anext__())
            except StopAsyncIteration:
                return

    def _stream_http(self) -> Iterator[str]:
        import httpx

        body = {
            "model": self.model,
            "messages": self._conversation(),
            "options": self.options,
            "stream": True,
        }
        with httpx.stream("POST", f"{self.url}/api/chat", json=body, timeout=None) as response:
            if response.status_code != 200:
                response.read()
                try:
                    message = response.json().get("error", response.text)
                except ValueError:
                    message = response.text
                raise LLMasOSError(str(message))
            for line in response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise LLMasOSError(str(event["error"]))
                if event.get("done"):
                    self.stopped_by = event.get("stopped_by")
                content = event.get("message", {}).get("content", "")
                if content:
                    yield content

    def _stream_response(self, text: str) -> Iterator[str]:
        """One turn of the stored conversation through the server's ``/v1/responses``."""
        import httpx

        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "conversation": self.conversation,
            "instructions": self.system,
            "stream": True,
            "store": False,
        }
        sampling, _ = sampling_from_parameters(self.options)
        if "temperature" in self.options:
            body["temperature"] = sampling.temperature
        if "num_predict" in self.options and sampling.max_tokens:
            body["max_output_tokens"] = sampling.max_tokens
        url = f"{self.url}/v1/responses"
        with httpx.stream("POST", url, json=body, timeout=None) as response:
            if response.status_code != 200:
                response.read()
                try:
                    error = response.json().get("error", {})
                    message = error.get("message", response.text)
                except (ValueError, AttributeError):
                    message = response.text
                raise LLMasOSError(str(message))
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: ") :])
                if event.get("type") == "error":
                    raise LLMasOSError(str(event.get("message")))
                if event.get("type") == "response.output_text.delta":
                    yield event.get("delta", "")
                elif event.get("type") == "response.completed":
                    compaction = event["response"].get("compaction")
                    if compaction:
                        err_console.print(
                            f"(compacted {compaction['summarized_items']} earlier items "
                            "into a summary)",
                            style="dim",
                        )

    async def _stream_local_conversation(self, text: str) -> AsyncIterator[str]:
        """One turn of the stored conversation on an in-process kernel."""
        from llmasos.cli.conversations import conversation_store
        from llmasos.cli.remote import local_engine
        from llmasos.kernel.interface import GenerateRequest
        from llmasos.memory import fit_context, input_items
        from llmasos.memory.conversations import NewItem
        from llmasos.memory.items import message_item
        from llmasos.memory.recall import ConversationIndex

        assert self.conversation is not None
        if self._engine is None:
            self._engine = local_engine(state.settings, state.store)
        sampling, explicit = sampling_from_parameters(self.options)
        new_items = input_items(text)
        with conversation_store(None) as (store, owner):
            history = store.items(owner, self.conversation)
            index = ConversationIndex.open(state.settings, store.database, self._engine)
            plan = await fit_context(
                self._engine,
                model=self.model,
                tenant="local",
                history=history,
                new_items=new_items,
                instructions=self.system,
                max_output_tokens=sampling.max_tokens,
                label=self.conversation,
                recaller=index.recaller(owner, self.conversation),
            )
            if plan.compaction is not None:
                err_console.print(
                    f"(compacted {plan.compaction.summarized_items} earlier items into a summary)",
                    style="dim",
                )
            request = GenerateRequest(
                model=self.model, messages=plan.messages, sampling=sampling, explicit=explicit
            )
            pieces = []
            async for output in self._engine.generate(request):
                if output.finished:
                    self.stopped_by = output.stopped_by
                if output.text:
                    pieces.append(output.text)
                    yield output.text
            inputs = [NewItem(item) for item in new_items]
            if plan.new_summary is not None:
                inputs.insert(0, plan.new_summary)
            response = {"id": new_response_id(), "model": plan.model}
            store.save_response(
                owner,
                response,
                inputs=inputs,
                outputs=[NewItem(message_item("assistant", "".join(pieces)))],
                conversation_id=self.conversation,
                store=False,
            )

    async def _stream_local(self) -> AsyncIterator[str]:
        from llmasos.cli.remote import local_engine
        from llmasos.kernel.interface import GenerateRequest

        if self._engine is None:
            self._engine = local_engine(state.settings, state.store)
        sampling, explicit = sampling_from_parameters(self.options)
        request = GenerateRequest(
            model=self.model,
            messages=self._conversation(),
            sampling=sampling,
            explicit=explicit,
        )
        async for output in self._engine.generate(request):
            if output.finished:
                self.stopped_by = output.stopped_by
            if output.text:
                yield output.text


def new_response_id() -> str:
    from llmasos.storage.ids import new_id

    return new_id("resp")


def sampling_from_parameters(options: dict[str, Any]) -> tuple[SamplingParams, frozenset[str]]:
    """SamplingParams from Ollama-named parameters, and the fields they set."""
    values: dict[str, Any] = {}
    for name, value in options.items():
        field = OLLAMA_PARAMETER_FIELDS[name]
        if name == "stop":
            value = tuple(value)
        elif name == "num_predict" and value < 0:
            value = None
        values[field] = value
    return SamplingParams(**values), frozenset(values)


def parse_parameter(name: str, value: str, options: dict[str, Any]) -> None:
    kind = REPL_PARAMETERS.get(name)
    if kind is None:
        raise InvalidRequestError(
            f"unknown parameter {name!r}; known: {', '.join(sorted(REPL_PARAMETERS))}"
        )
    try:
        parsed = parse_parameter_value(kind, value)
    except ValueError:
        raise InvalidRequestError(f"{name} must be a {kind.__name__}, not {value!r}") from None
    if name == "stop":
        options.setdefault("stop", []).append(parsed)
    else:
        options[name] = parsed


def show_info(model: str) -> None:
    manifest = state.store.manifest(model)
    console.print(
        f"  Model\n    name            {manifest.name}\n"
        f"    architecture    {manifest.family}\n"
        f"    parameters      {manifest.parameter_count}\n"
        f"    context length  {manifest.context_length}\n"
        f"    quantization    {manifest.quantization}\n"
        f"  System\n    {manifest.system or '(none)'}",
        highlight=False,
        markup=False,
    )


def read_message() -> str | None:
    """One user message; None at end of input."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.startswith('"""'):
        return line
    lines = [line[3:]]
    while not lines[-1].endswith('"""'):
        try:
            lines.append(input("... "))
        except EOFError:
            break
    text = "\n".join(lines)
    return text[:-3] if text.endswith('"""') else text


def repl(session: ChatSession) -> None:
    with contextlib.suppress(ImportError):  # line editing and history for input()
        import readline  # noqa: F401
    console.print("Send a message (/? for help)", style="dim")
    while True:
        text = read_message()
        if text is None or text.strip() in ("/bye", "/exit"):
            return
        command = text.strip()
        if not command:
            continue
        try:
            if command in ("/?", "/help"):
                console.print(HELP, markup=False)
            elif command == "/clear":
                session.messages.clear()
                if session.conversation is not None:
                    session.conversation = session.open_conversation("new")
                    console.print(f"Started a new conversation {session.conversation}.")
                else:
                    console.print("Cleared the conversation.")
            elif command == "/show info":
                show_info(session.model)
            elif command.startswith("/set system "):
                session.system = command.removeprefix("/set system ").strip()
                console.print("Set the system prompt.")
            elif command.startswith("/set parameter "):
                parts = shlex.split(command.removeprefix("/set parameter "))
                if len(parts) != 2:
                    raise InvalidRequestError("usage: /set parameter NAME VALUE")
                parse_parameter(parts[0], parts[1], session.options)
                console.print(f"Set parameter '{parts[0]}' to '{parts[1]}'", markup=False)
            elif command.startswith("/"):
                console.print(f"Unknown command '{command.split()[0]}'. Type /? for help")
            else:
                session.ask(text)
        except LLMasOSError as error:
            err_console.print(f"Error: {error}", markup=False, highlight=False)
        except KeyboardInterrupt:
            console.print()


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="Model name (e.g. smollm2).")],
    prompt: Annotated[
        str | None, typer.Argument(help="A prompt; omit it for an interactive chat.")
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", help="System prompt (default: the model's).")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", "-p", help="NAME=VALUE sampling parameter (repeatable)."),
    ] = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation",
            "-c",
            help="Continue a stored conversation (an id, or 'new' to start one); the turns "
            "are stored, and compacted into a summary when they outgrow the context.",
        ),
    ] = None,
    voice: Annotated[
        Path | None,
        typer.Option(
            "--voice",
            help="A spoken turn: transcribe this recording, answer it, and speak the answer "
            "into --voice-out.",
        ),
    ] = None,
    voice_out: Annotated[
        Path | None,
        typer.Option(
            "--voice-out", help="Where the spoken answer goes (default: FILE.reply.wav beside it)."
        ),
    ] = None,
    mic: Annotated[
        bool,
        typer.Option(
            "--mic",
            help="A spoken conversation: each turn recorded from the microphone setting's "
            "device, answered, and the answer played on the speaker setting's.",
        ),
    ] = False,
    turns: Annotated[
        int | None,
        typer.Option("--turns", min=1, help="With --mic: stop after this many turns."),
    ] = None,
) -> None:
    """Run a model: answer PROMPT, or open an interactive chat."""
    options: dict[str, Any] = {}
    for item in parameter or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequestError(f"--parameter takes NAME=VALUE, not {item!r}")
        parse_parameter(name.strip(), value.strip(), options)
    from llmasos.distributed.remote.registry import RemoteRegistry

    if RemoteRegistry.for_settings(state.settings).get(model) is None:
        state.store.manifest(model)  # unknown names fail here, with suggestions
    session = ChatSession(model, options, system, conversation)
    try:
        if voice is not None and mic:
            raise InvalidRequestError(
                "--voice takes a recording, --mic the microphone: one of them"
            )
        if voice is not None:
            spoken_turn(session, voice, voice_out or voice.with_suffix(".reply.wav"))
            return
        if mic:
            spoken_conversation(session, turns)
            return
        if prompt is None and not sys.stdin.isatty():
            prompt = sys.stdin.read()
        if prompt is not None:
            session.ask(prompt)
        else:
            repl(session)
    finally:
        session.close()


def spoken_conversation(session: ChatSession, turns: int | None) -> None:
    """Listen, answer, speak, until ``turns`` or Ctrl-C (while listening, or a turn with no
    speech). Without a speaker the answers are printed only, and that is said once."""
    from llmasos.cli.perception import play_speech, record_turn, transcribe_audio
    from llmasos.perception.microphone import DeviceUnavailableError

    speaker = True
    done = 0
    while turns is None or done < turns:
        recording = record_turn(max_seconds=60.0)
        if recording.ended_by == "interrupted" or not recording.heard_speech:
            err_console.print("heard no speech; the conversation ends", highlight=False)
            return
        heard = transcribe_audio(recording.wav()).text
        if not heard.strip():
            err_console.print("no words were recognized; say it again", highlight=False)
            continue
        err_console.print(f"you said: {heard}", highlight=False, markup=False)
        answer = session.ask(heard)
        done += 1
        if speaker and answer.strip():
            try:
                play_speech(answer)
            except DeviceUnavailableError as error:
                err_console.print(f"{error.message}; answers are printed only", highlight=False)
                speaker = False


def spoken_turn(session: ChatSession, recording: Path, out: Path) -> None:
    """Transcribe ``recording``, ask the model, speak its answer into ``out``."""
    from llmasos.cli.perception import speak_to_file, transcribe_file

    heard = transcribe_file(recording).text
    if not heard.strip():
        raise InvalidRequestError(f"no speech was recognized in {recording}")
    err_console.print(f"you said: {heard}", highlight=False, markup=False)
    answer = session.ask(heard)
    if not answer.strip():
        raise InvalidRequestError("the model gave an empty answer; nothing to speak")
    speak_to_file(answer, out)
    err_console.print(f"spoken answer: {out}", highlight=False, markup=False)
