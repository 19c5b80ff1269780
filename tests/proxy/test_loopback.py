"""The loopback model: reply rules, §1.5 stream rules checked with the real openai SDK,
embeddings."""

import array
import base64
import math
import re

import httpx2
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from proxy import loopback
from proxy.loopback import (
    LoopbackError,
    chat_completion,
    chat_stream,
    chat_usage,
)
from proxy.loopback_embeddings import embeddings, usage_for

RID = "chatcmpl-loopbackTest0001"
CREATED = 1_760_000_000

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {
                "tz": {"type": "string"},
                "offset": {"type": "integer"},
                "exact": {"type": ["boolean", "null"]},
                "unit": {"enum": ["h", "m"]},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "tags": {"type": "array"}},
                    "required": ["lat", "tags"],
                },
            },
            "required": ["tz", "offset", "exact", "unit", "where"],
        },
    },
}
TOOLS = [WEATHER, TIME]


def user(text, **extra):
    return {"model": "loopback", "messages": [{"role": "user", "content": text}], **extra}


def complete(body, request_id=RID):
    return chat_completion(body, request_id=request_id, created=CREATED)


def message(body):
    return complete(body)["choices"][0]["message"]


def chunks_of(frames):
    assert frames[-1] == b"data: [DONE]\n\n"
    out = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: {") and frame.endswith(b"}\n\n")
        assert frame.count(b"\n") == 2  # one data line, one blank line
        out.append(orjson.loads(frame[6:]))
    return out


def rebuild(frames, tools=None, piece=3):
    """Feed the frames, cut into `piece`-byte slices, through the SDK's SSE decoder and its
    stream accumulator (the code behind `client.chat.completions.stream`)."""
    data = b"".join(frames)
    state = ChatCompletionStreamState(input_tools=tools) if tools else ChatCompletionStreamState()
    done = False
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    for sse in SSEDecoder().iter_bytes(iter(pieces)):
        assert not done, "nothing may follow [DONE]"
        if sse.data.startswith("[DONE]"):
            done = True
            continue
        state.handle_chunk(ChatCompletionChunk.model_validate(sse.json()))
    assert done
    snapshot = state.current_completion_snapshot
    if any(c.finish_reason == "length" for c in snapshot.choices):
        with pytest.raises(openai.LengthFinishReasonError):  # the helper refuses to parse those
            state.get_final_completion()
        return snapshot
    return state.get_final_completion()


def assert_same_answer(body, tools=None, piece=3):
    """The stream, rebuilt by the SDK, says exactly what the non-stream answer says."""
    full = complete(body)
    final = rebuild(chat_stream(body, request_id=RID, created=CREATED), tools=tools, piece=piece)
    assert final.id == full["id"] and final.created == CREATED and final.model == full["model"]
    assert len(final.choices) == len(full["choices"])
    for got, want in zip(final.choices, full["choices"], strict=True):
        assert got.index == want["index"]
        assert got.finish_reason == want["finish_reason"]
        assert got.message.role == "assistant"
        assert got.message.content == want["message"]["content"]
        calls = [c.model_dump(include={"id", "type", "function"})
                 for c in got.message.tool_calls or []]
        for c in calls:
            c["function"] = {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        assert calls == want["message"].get("tool_calls", [])
    return full, final


# ---------------------------------------------------------------------------------------------
# Non-stream answers


def test_text_reply_has_the_chat_completion_shape():
    out = complete(user("hello there"))
    assert list(out) == ["id", "object", "created", "model", "choices", "usage", "service_tier",
                         "system_fingerprint"]
    assert out["id"] == RID and out["object"] == "chat.completion" and out["created"] == CREATED
    assert out["model"] == "loopback"
    assert out["system_fingerprint"].startswith("fp_")
    assert out["choices"] == [{
        "index": 0,
        "message": {"role": "assistant", "content": "loopback: hello there", "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }]
    usage = out["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == {
        "reasoning_tokens": 0, "audio_tokens": 0,
        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
    }
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The SDK's own model accepts it.
    assert openai.types.chat.ChatCompletion.model_validate(out).choices[0].message.content == (
        "loopback: hello there")


def test_model_is_echoed_as_requested():
    assert complete(dict(user("hi"), model="loopback-mini"))["model"] == "loopback-mini"


def test_echo_uses_the_last_user_message_and_notes_non_text_parts():
    body = {"model": "loopback", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "loopback: first"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
            {"type": "text", "text": "this?"},
        ]},
    ]}
    assert message(body)["content"] == "loopback: what is\n[image]\n[audio]\nthis?"


def test_no_user_message_gives_the_fixed_sentence():
    body = {"model": "loopback", "messages": [{"role": "system", "content": "You are a bot."}]}
    assert message(body)["content"] == loopback.NO_USER_MESSAGE_REPLY


def test_answers_are_deterministic():
    body = user('call get_weather with {"city":"Oslo"} and get_time', tools=TOOLS,
                stream_options={"include_usage": True})
    assert complete(body) == complete(body)
    assert chat_stream(body, request_id=RID, created=CREATED) == chat_stream(
        body, request_id=RID, created=CREATED)
    other = complete(body, request_id="chatcmpl-other")
    ids = [c["id"] for c in complete(body)["choices"][0]["message"]["tool_calls"]]
    other_ids = [c["id"] for c in other["choices"][0]["message"]["tool_calls"]]
    assert set(ids).isdisjoint(other_ids)
    assert embeddings({"model": "m", "input": "x"}) == embeddings({"model": "m", "input": "x"})


def test_usage_follows_the_documented_estimate():
    messages = [{"role": "system", "content": "abcdefgh"}, {"role": "user", "content": "hé"}]
    body = {"model": "loopback", "messages": messages}
    # 8 + 3 bytes of text, 2 messages; reply "loopback: hé" is 13 bytes.
    assert chat_usage(body)["prompt_tokens"] == math.ceil(11 / 4) + 3 * 2
    assert chat_usage(body)["completion_tokens"] == math.ceil(13 / 4)
    with_tools = dict(body, tools=TOOLS)
    schema_bytes = len(orjson.dumps(TOOLS))
    assert chat_usage(with_tools)["prompt_tokens"] == math.ceil((11 + schema_bytes) / 4) + 6
    assert chat_usage(body) == complete(body)["usage"] == usage_for(body)


# ---------------------------------------------------------------------------------------------
# Streaming (§1.5)

STREAM_CASES = {
    "text": user("the quick brown fox jumps"),
    "multibyte": user("¡Hola! こんにちは 世界 ok"),
    "one_call": user('please call get_weather with {"city":"Paris, France"}', tools=TOOLS),
    "parallel_calls": user('call get_weather {"city":"Paris"} and get_time {"tz":"Asia/Tokyo"}',
                           tools=TOOLS),
    "forced_named": user("what time is it?", tools=TOOLS,
                         tool_choice={"type": "function", "function": {"name": "get_time"}}),
    "two_choices": user("one two three", n=2),
    "two_choices_calls": user("use get_time", tools=TOOLS, n=2),
    "length": user("a fairly long sentence that will not fit", max_tokens=3),
    "empty_after_stop": user("anything", stop="loop"),
}


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_rebuilt_by_the_sdk_equals_the_non_stream_answer(case, include_usage):
    body = dict(STREAM_CASES[case], stream=True, stream_options={"include_usage": include_usage})
    full, final = assert_same_answer(body, tools=body.get("tools"))
    if include_usage:
        assert final.usage.model_dump(exclude_none=True) == full["usage"]
    else:
        assert final.usage is None


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(max_size=60),
    limit=st.none() | st.integers(1, 20),
    stop=st.none() | st.text(min_size=1, max_size=2),
    include_usage=st.booleans(),
    piece=st.integers(1, 7),
)
def test_stream_matches_non_stream_for_any_text(text, limit, stop, include_usage, piece):
    body = user(text, max_tokens=limit, stop=stop, stream_options={"include_usage": include_usage})
    full, final = assert_same_answer(body, piece=piece)
    usage = full["usage"]
    assert usage["completion_tokens"] >= 1
    if limit is not None:
        assert usage["completion_tokens"] <= limit


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_frames_follow_the_accumulation_rules(case, include_usage):
    body = dict(STREAM_CASES[case], stream=True, stream_options={"include_usage": include_usage})
    chunks = chunks_of(chat_stream(body, request_id=RID, created=CREATED))
    # Header key order as in transcripts/openai_chat_stream_include_usage.sse (no obfuscation).
    keys = ["id", "object", "created", "model", "service_tier", "system_fingerprint", "choices"]
    for chunk in chunks:
        assert list(chunk) == (keys + ["usage"] if include_usage else keys)
        assert (chunk["id"], chunk["object"], chunk["created"]) == \
            (RID, "chat.completion.chunk", CREATED)
        assert "error" not in chunk
    if include_usage:
        *body_chunks, last = chunks
        assert last["choices"] == [] and last["usage"] == chat_usage(body)
        assert all(c["usage"] is None for c in body_chunks)
    else:
        body_chunks = chunks
    roles, seen_ids, finishes = {}, set(), {}
    for chunk in body_chunks:
        (choice,) = chunk["choices"]
        assert list(choice) == ["index", "delta", "logprobs", "finish_reason"]
        i, delta = choice["index"], choice["delta"]
        assert i not in finishes, "nothing after a choice's finish chunk"
        if "role" in delta:
            assert i not in roles, "role is sent once"
            roles[i] = delta
            assert delta["role"] == "assistant" and delta["refusal"] is None
        else:
            assert i in roles, "the role chunk comes first"
        for call in delta.get("tool_calls", []):
            assert type(call["index"]) is int
            if "id" in call:
                key = (i, call["index"])
                assert key not in seen_ids, "id and name are sent once per index"
                seen_ids.add(key)
                assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call["id"])
                assert call["type"] == "function" and call["function"]["arguments"] == ""
            else:
                assert list(call) == ["index", "function"]
                assert list(call["function"]) == ["arguments"]
        if choice["finish_reason"] is not None:
            assert delta == {}
            finishes[i] = choice["finish_reason"]
    n = body.get("n", 1)
    assert sorted(roles) == sorted(finishes) == list(range(n))


def test_text_stream_is_split_into_several_content_chunks():
    chunks = chunks_of(chat_stream(user("hello big world"), request_id=RID, created=CREATED))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert pieces == ["loopback:", " hello", " big", " world"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}


def test_long_replies_are_grouped_into_a_bounded_number_of_chunks():
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = chunks_of(chat_stream(user(text), request_id=RID, created=CREATED))
    assert len(chunks) <= loopback.MAX_STREAM_PIECES + 2
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == "loopback: " + text


def test_first_tool_call_rides_in_the_role_chunk():
    body = user('call get_weather with {"city":"Paris"}', tools=TOOLS)
    chunks = chunks_of(chat_stream(body, request_id=RID, created=CREATED))
    first = chunks[0]["choices"][0]["delta"]
    assert list(first) == ["role", "content", "tool_calls", "refusal"] and first["content"] is None
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                 for c in chunks[1:-1]]
    assert len(fragments) >= 3 and "".join(fragments) == '{"city":"Paris"}'


def _sdk_client():
    def handler(request):
        body = orjson.loads(request.content)
        if request.url.path.endswith("/embeddings"):
            payload = orjson.dumps(embeddings(body))
            return httpx2.Response(200, content=payload,
                                   headers={"content-type": "application/json"})
        if body.get("stream"):
            frames = chat_stream(body, request_id=RID, created=CREATED)
            return httpx2.Response(200, content=iter(frames),
                                   headers={"content-type": "text/event-stream"})
        payload = orjson.dumps(complete(body))
        return httpx2.Response(200, content=payload, headers={"content-type": "application/json"})

    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(api_key="sk-loopback", base_url="http://loopback.invalid/v1",
                         http_client=httpx2.Client(transport=transport), max_retries=0)


def test_real_sdk_stream_helper_and_plain_stream():
    client = _sdk_client()
    messages = [{"role": "user", "content": 'use get_weather {"city":"Paris"} then get_time'}]
    with client.chat.completions.stream(model="loopback", messages=messages, tools=TOOLS,
                                        stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    want = complete({"model": "loopback", "messages": messages, "tools": TOOLS})
    assert final.choices[0].message.role == "assistant"
    tool_calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in tool_calls] == ["get_weather", "get_time"]
    assert [c.id for c in tool_calls] == [
        c["id"] for c in want["choices"][0]["message"]["tool_calls"]]
    assert final.usage.total_tokens == want["usage"]["total_tokens"]

    text = "".join(chunk.choices[0].delta.content or ""
                   for chunk in client.chat.completions.create(
                       model="loopback", stream=True,
                       messages=[{"role": "user", "content": "hi you"}])
                   if chunk.choices)
    assert text == "loopback: hi you"
    plain = client.chat.completions.create(model="loopback",
                                           messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content == "loopback: hi"


# ---------------------------------------------------------------------------------------------
# Tool calls


def calls_of(body, request_id=RID):
    out = complete(body, request_id)
    choice = out["choices"][0]
    calls = choice["message"].get("tool_calls")
    named = [(c["function"]["name"], orjson.loads(c["function"]["arguments"]))
             for c in calls or []]
    return choice["finish_reason"], named, choice["message"]


def test_call_with_json_arguments():
    finish, calls, msg = calls_of(user('please call get_weather with {"city": "Paris"} thanks',
                                       tools=TOOLS))
    assert finish == "tool_calls" and msg["content"] is None
    assert calls == [("get_weather", {"city": "Paris"})]
    assert msg["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", msg["tool_calls"][0]["id"])


def test_use_without_json_builds_arguments_from_the_required_schema():
    _, calls, _ = calls_of(user("Use get_time please", tools=TOOLS))
    assert calls == [("get_time", {"tz": "loopback", "offset": 0, "exact": False, "unit": "h",
                                   "where": {"lat": 0, "tags": []}})]
    _, calls, _ = calls_of(user("use get_weather {not json}", tools=TOOLS))
    assert calls == [("get_weather", {"city": "loopback"})]


def test_malformed_schema_types_get_the_string_placeholder():
    # A "type" that is an object or holds a list is unhashable: it must not reach the lookup
    # of the scalar placeholders (it raised TypeError, a 500 from the gateway).
    props = {"a": {"type": {}}, "b": {"type": [["x"]]}, "c": {"type": ["null", "integer"]}}
    tools = [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": props,
                                    "required": ["a", "b", "c"]}}}]
    _, calls, _ = calls_of(user("call f", tools=tools))
    assert calls == [("f", {"a": "loopback", "b": "loopback", "c": 0})]


@pytest.mark.parametrize("text", [
    "what is the weather? get_weather maybe",  # no trigger word
    "get_weather: call it later",  # the name comes before the trigger word
    "recall get_weather",  # "call" inside another word
    "call get_weatherman",  # not a whole tool name
    "call the plumber",  # no tool named
])
def test_no_trigger_means_a_text_answer(text):
    finish, calls, msg = calls_of(user(text, tools=TOOLS))
    assert (finish, calls, msg["content"]) == ("stop", [], "loopback: " + text)


def test_tool_choice_none_disables_calls():
    _, calls, msg = calls_of(user("call get_weather", tools=TOOLS, tool_choice="none"))
    assert calls == [] and msg["content"] == "loopback: call get_weather"


def test_tool_choice_required_calls_the_first_tool_when_none_is_named():
    finish, calls, _ = calls_of(user("hello", tools=TOOLS, tool_choice="required"))
    assert finish == "tool_calls" and calls == [("get_weather", {"city": "loopback"})]
    _, calls, _ = calls_of(user('get_time {"tz":"UTC"}', tools=TOOLS, tool_choice="required"))
    assert calls == [("get_time", {"tz": "UTC"})]


def test_named_tool_choice_finishes_with_stop_like_openai():
    choice = {"type": "function", "function": {"name": "get_time"}}
    finish, calls, _ = calls_of(user('call get_weather and get_time {"tz":"UTC"}', tools=TOOLS,
                                     tool_choice=choice))
    assert finish == "stop" and calls == [("get_time", {"tz": "UTC"})]


def test_allowed_tools_narrow_the_choice():
    choice = {"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}
    _, calls, _ = calls_of(user("call get_weather and get_time", tools=TOOLS, tool_choice=choice))
    assert [name for name, _ in calls] == ["get_time"]
    choice["allowed_tools"]["mode"] = "required"
    _, calls, _ = calls_of(user("nothing named", tools=TOOLS, tool_choice=choice))
    assert [name for name, _ in calls] == ["get_time"]


def test_parallel_calls_in_text_order():
    text = 'call get_time {"tz":"UTC"}, get_weather {"city":"Oslo"} and get_weather {"city":"Rome"}'
    finish, calls, msg = calls_of(user(text, tools=TOOLS))
    assert finish == "tool_calls"
    assert calls == [("get_time", {"tz": "UTC"}), ("get_weather", {"city": "Oslo"}),
                     ("get_weather", {"city": "Rome"})]
    ids = [c["id"] for c in msg["tool_calls"]]
    assert len(set(ids)) == 3 and all(len(i) <= 40 for i in ids)
    _, calls, _ = calls_of(user(text, tools=TOOLS, parallel_tool_calls=False))
    assert calls == [("get_time", {"tz": "UTC"})]


def test_repeated_identical_calls_collapse_and_names_inside_arguments_are_not_calls():
    _, calls, _ = calls_of(user("call get_time and get_time again", tools=TOOLS))
    assert [name for name, _ in calls] == ["get_time"]
    _, calls, _ = calls_of(user('call get_weather {"city":"get_time"}', tools=TOOLS))
    assert calls == [("get_weather", {"city": "get_time"})]


def test_unparseable_arguments_fall_back_to_the_schema():
    for text in ['call get_weather {"city": Paris}', "call get_weather " + '{"a":' * 50_000]:
        _, calls, _ = calls_of(user(text, tools=TOOLS))
        assert calls == [("get_weather", {"city": "loopback"})]


def test_two_turn_agent_loop_completes():
    body = user('call get_weather with {"city":"Paris"}', tools=TOOLS)
    first = complete(body)["choices"][0]["message"]
    call = first["tool_calls"][0]
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
    ]
    out = complete(body)["choices"][0]
    assert out["finish_reason"] == "stop"
    assert out["message"]["content"] == 'loopback: tool get_weather returned: {"temp_c": 21}'
    assert "tool_calls" not in out["message"]
    # A third user turn starts over from the user's words.
    body["messages"].append({"role": "user", "content": "thanks"})
    assert message(body)["content"] == "loopback: thanks"


def test_parallel_tool_results_are_all_reported():
    body = user('call get_weather {"city":"Oslo"} and get_time', tools=TOOLS)
    calls = complete(body)["choices"][0]["message"]["tool_calls"]
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "rain"},
        {"role": "tool", "tool_call_id": calls[1]["id"],
         "content": [{"type": "text", "text": "12:00"}]},
    ]
    assert message(body)["content"] == (
        "loopback: tool get_weather returned: rain; tool get_time returned: 12:00")


def test_tool_result_without_a_known_call_names_the_id():
    body = {"model": "loopback", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "ok"},
    ]}
    assert message(body)["content"] == "loopback: tool call_unknown returned: ok"


def test_forced_choice_calls_even_after_a_tool_result():
    body = user("call get_time", tools=TOOLS, tool_choice="required")
    calls = complete(body)["choices"][0]["message"]["tool_calls"]
    body["messages"] += [{"role": "assistant", "content": None, "tool_calls": calls},
                         {"role": "tool", "tool_call_id": calls[0]["id"], "content": "noon"}]
    assert message(body)["content"] is None
    body["tool_choice"] = "auto"
    assert message(body)["content"] == "loopback: tool get_time returned: noon"


# ---------------------------------------------------------------------------------------------
# Limits: max tokens, stop, n


def test_max_tokens_truncates_with_finish_length():
    out = complete(user("one two three four five six", max_tokens=2))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "loopback"  # 4 * 2 bytes
    assert out["usage"]["completion_tokens"] == 2
    # max_completion_tokens is the same setting; the smaller of the two wins.
    assert message(user("one two", max_completion_tokens=3))["content"] == "loopback: on"
    assert message(user("one two", max_completion_tokens=3, max_tokens=1))["content"] == "loop"
    # A reply that fits is untouched.
    assert complete(user("hi", max_tokens=3))["choices"][0]["finish_reason"] == "stop"


def test_truncation_respects_utf8_characters():
    content = message(user("ééééé", max_tokens=4))["content"]  # 16 bytes: 10 + 3 full "é"
    assert content == "loopback: ééé"


def test_max_tokens_cuts_tool_call_arguments():
    out = complete(user('call get_weather {"city":"Paris"} and get_time', tools=TOOLS,
                        max_tokens=5))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    # 4 * 5 = 20 bytes for name + arguments: 11 for "get_weather", 9 left; get_time is dropped.
    assert call["function"]["arguments"] == '{"city":"'
    assert out["usage"]["completion_tokens"] <= 5


def test_stop_cuts_at_the_earliest_stop_string():
    assert message(user("alpha beta gamma", stop="gamma"))["content"] == "loopback: alpha beta "
    two_stops = user("alpha beta gamma", stop=["gamma", "beta"])
    assert message(two_stops)["content"] == "loopback: alpha "
    out = complete(user("alpha", stop=["zzz"]))
    assert out["choices"][0]["finish_reason"] == "stop"


def test_n_gives_identical_choices_with_their_own_call_ids():
    out = complete(user("call get_time", tools=TOOLS, n=3))
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    ids = [c["message"]["tool_calls"][0]["id"] for c in out["choices"]]
    assert len(set(ids)) == 3
    one = complete(user("call get_time", tools=TOOLS))
    assert out["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    assert out["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]


# ---------------------------------------------------------------------------------------------
# Embeddings


def sdk_decode(b64: str) -> list[float]:
    # What openai/lib/_parsing/_embeddings.py does without numpy.
    return array.array("f", base64.b64decode(b64)).tolist()


def test_embedding_shape_default_dimensions_and_unit_norm():
    out = embeddings({"model": "text-embedding-3-small", "input": "hello world"})
    assert list(out) == ["object", "data", "model", "usage"]
    assert out["object"] == "list" and out["model"] == "text-embedding-3-small"
    (item,) = out["data"]
    assert list(item) == ["object", "index", "embedding"] and item["object"] == "embedding"
    vec = item["embedding"]
    assert len(vec) == loopback.DEFAULT_EMBEDDING_DIMENSIONS == 1536
    assert math.isclose(math.hypot(*vec), 1.0, rel_tol=1e-5)
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_float_and_base64_carry_the_same_numbers():
    body = {"model": "m", "input": ["a", "b"], "dimensions": 64}
    floats = embeddings(dict(body, encoding_format="float"))
    packed = embeddings(dict(body, encoding_format="base64"))
    for f, b in zip(floats["data"], packed["data"], strict=True):
        assert isinstance(b["embedding"], str)
        assert sdk_decode(b["embedding"]) == f["embedding"]  # exact: floats are float32 values
    assert embeddings(body) == floats  # float is the default


def test_sdk_default_base64_decoding_matches_float_format():
    client = _sdk_client()
    decoded = client.embeddings.create(model="loopback", input=["x", "y"], dimensions=32)
    floats = client.embeddings.create(model="loopback", input=["x", "y"], dimensions=32,
                                      encoding_format="float")
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert len(decoded.data[0].embedding) == 32


def test_dimensions_cut_the_same_vector():
    full = embeddings({"model": "m", "input": "text"})["data"][0]["embedding"]
    short = embeddings({"model": "m", "input": "text", "dimensions": 256})["data"][0]["embedding"]
    norm = math.hypot(*full[:256])
    assert len(short) == 256
    for s, f in zip(short, full[:256], strict=True):
        assert math.isclose(s, f / norm, rel_tol=1e-5, abs_tol=1e-7)
    widest = embeddings({"model": "m", "input": "t", "dimensions": 8192})
    assert len(widest["data"][0]["embedding"]) == 8192


def test_embedding_input_forms():
    out = embeddings({"model": "m", "input": ["alpha", "beta", "alpha"], "dimensions": 8})
    vecs = [d["embedding"] for d in out["data"]]
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert vecs[0] == vecs[2] != vecs[1]
    tokens = embeddings({"model": "m", "input": [1, 2, 3], "dimensions": 8})
    assert len(tokens["data"]) == 1 and tokens["usage"]["prompt_tokens"] == 3
    lists = embeddings({"model": "m", "input": [[1, 2, 3], [4]], "dimensions": 8})
    assert lists["data"][0]["embedding"] == tokens["data"][0]["embedding"]
    assert lists["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert usage_for({"model": "m", "input": [[1, 2, 3], [4]]}) == lists["usage"]


# ---------------------------------------------------------------------------------------------
# Invalid input -> 400 naming the param

BAD_CHAT = [
    ({"model": "loopback"}, "messages"),
    ({"model": "loopback", "messages": "hi"}, "messages"),
    ({"model": "loopback", "messages": []}, "messages"),
    ({"model": "loopback", "messages": ["hi"]}, "messages[0]"),
    ({"model": "loopback", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "loopback", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "loopback", "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": "loopback", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    (user("x", n=0), "n"),
    (user("x", n=129), "n"),
    (user("x", n=True), "n"),
    (user("x", max_tokens=0), "max_tokens"),
    (user("x", max_completion_tokens="9"), "max_completion_tokens"),
    (user("x", stop=["a", "b", "c", "d", "e"]), "stop"),
    (user("x", stop=7), "stop"),
    (user("x", stream_options=True), "stream_options"),
    (user("x", tools={"a": 1}), "tools"),
    (user("x", tools=[{"type": "function", "function": {"name": "bad name"}}]),
     "tools[0].function.name"),
    (user("x", tools=[{"type": "web_search"}]), "tools[0].type"),
    (user("x", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}),
     "tool_choice"),
    (user("x", tools=TOOLS, tool_choice="sometimes"), "tool_choice"),
    (user("x", tool_choice="required"), "tool_choice"),
]


@pytest.mark.parametrize(("body", "param"), BAD_CHAT)
def test_invalid_chat_requests(body, param):
    for call in (complete, lambda b: chat_stream(b, request_id=RID, created=CREATED), chat_usage):
        with pytest.raises(LoopbackError) as info:
            call(body)
        assert (info.value.status, info.value.param) == (400, param)


BAD_EMBEDDINGS = [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": ""}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": [[]]}, "input"),
    ({"model": "m", "input": [1, "a"]}, "input"),
    ({"model": "m", "input": [-1]}, "input"),
    ({"model": "m", "input": {"text": "a"}}, "input"),
    ({"model": "m", "input": ["a"] * 2049}, "input"),
    ({"input": "a"}, "model"),
    ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
    ({"model": "m", "input": "a", "dimensions": 8193}, "dimensions"),
    ({"model": "m", "input": "a", "dimensions": "16"}, "dimensions"),
    ({"model": "m", "input": "a", "dimensions": 16.0}, "dimensions"),
    ({"model": "m", "input": "a", "encoding_format": "hex"}, "encoding_format"),
]


@pytest.mark.parametrize(("body", "param"), BAD_EMBEDDINGS)
def test_invalid_embedding_requests(body, param):
    with pytest.raises(LoopbackError) as info:
        embeddings(body)
    assert (info.value.status, info.value.param) == (400, param)


def test_error_body_is_openai_shaped():
    with pytest.raises(LoopbackError) as info:
        embeddings({"model": "m", "input": "a", "dimensions": 0})
    body = info.value.openai_error()
    assert list(body["error"]) == ["message", "type", "param", "code"]
    assert (body["error"]["type"], body["error"]["param"]) == \
        ("invalid_request_error", "dimensions")
    assert "dimensions" in body["error"]["message"] and str(info.value) == info.value.message
