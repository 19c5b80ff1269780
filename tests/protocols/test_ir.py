"""The intermediate representation: shape, stability marker and helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocols import ir, jsonio

IR_PATH = Path(ir.__file__)

DATACLASSES = [
    ir.Text, ir.Image, ir.File, ir.ToolCall, ir.ToolResult, ir.Reasoning, ir.NativeBlock,
    ir.Message, ir.FunctionTool, ir.CustomTool, ir.NativeTool, ir.ToolChoice,
    ir.ResponseFormat, ir.ReasoningConfig, ir.Request, ir.Usage, ir.Response, ir.ApiError,
    ir.MessageStart, ir.BlockStart, ir.TextDelta, ir.ToolArgsDelta, ir.ReasoningDelta,
    ir.SignatureDelta, ir.BlockStop, ir.UsageUpdate, ir.MessageEnd, ir.StreamError, ir.Ping,
]


def test_stability_marker_near_the_top() -> None:
    head = IR_PATH.read_text().splitlines()[:5]
    assert "# IR-STABLE" in head


def test_all_exports_exist() -> None:
    for name in ir.__all__:
        assert hasattr(ir, name), name


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda c: c.__name__)
def test_classes_are_frozen_and_slotted(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in cls.__dict__
    fields = [f for f in dataclasses.fields(cls)]
    # Every field after the required ones has a default, so adding optional fields
    # later stays backward compatible.
    seen_default = False
    for f in fields:
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        if seen_default:
            assert has_default, f"{cls.__name__}.{f.name}"
        seen_default = seen_default or has_default


def test_frozen_instances_reject_assignment() -> None:
    t = ir.Text("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.text = "x"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        t.other = 1  # type: ignore[attr-defined]


def test_stream_events_are_small_and_equal_by_value() -> None:
    assert ir.TextDelta(0, "a") == ir.TextDelta(0, "a")
    assert ir.BlockStart(1, ir.BlockKind.TOOL_CALL, "id", "n").tool_kind is ir.ToolKind.FUNCTION
    assert ir.MessageEnd(ir.StopReason.END_TURN).stop_sequence is None
    assert ir.PING == ir.Ping()


def test_usage_semantics() -> None:
    u = ir.Usage(input_tokens=100, output_tokens=20, cached_tokens=60, reasoning_tokens=5)
    assert u.total_tokens == 120
    assert ir.Usage() == ir.Usage(0, 0, 0, 0, 0)


def test_enums_are_plain_strings() -> None:
    assert ir.StopReason.TOOL_USE == "tool_use"
    assert ir.Role("developer") is ir.Role.DEVELOPER
    assert {k.value for k in ir.StopReason} >= {
        "end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filter", "pause", "error"
    }
    assert set(ir.FORMATS) == {"openai_chat", "openai_responses", "anthropic_messages", "gemini"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("   ", {}),
        ('{"a": ', {ir.RAW_ARGUMENTS_KEY: '{"a": '}),
        ("[1, 2]", {ir.RAW_ARGUMENTS_KEY: "[1, 2]"}),
        ("not json", {ir.RAW_ARGUMENTS_KEY: "not json"}),
    ],
)
def test_parse_arguments(text: str, expected: dict) -> None:
    assert ir.parse_arguments(text) == expected
    assert ir.parse_arguments(text, jsonio.loads) == expected


def test_extras_for() -> None:
    t = ir.Text("x", extras={"openai_chat": {"k": 1}})
    assert ir.extras_for(t, "openai_chat") == {"k": 1}
    assert ir.extras_for(t, "anthropic_messages") == {}
    assert ir.extras_for(ir.Text("y"), "openai_chat") == {}


def test_context_ids_are_deterministic_and_distinct() -> None:
    ctx = ir.Context(request_id="r/1", created=5)
    assert ctx.new_id("msg_") == "msg_r_1"
    assert ctx.new_id("msg_") == "msg_r_1_2"
    assert ctx.new_id("call_") == "call_r_1"
    again = ir.Context(request_id="r/1", created=5)
    assert again.new_id("msg_") == "msg_r_1"


def test_context_id_factory_wins() -> None:
    ctx = ir.Context(request_id="r", created=0, id_factory=lambda p: p + "X")
    assert ctx.new_id("chatcmpl-") == "chatcmpl-X"
    assert ctx.tool_names == {}
    assert ctx.client_request is None
