#!/usr/bin/env python3
"""The official `openai` package against a running `sambalm serve`: completions, chat, streaming and
logprobs, as a real client sends them. Usage: serve_openai_client.py BASE_URL MODEL (BASE_URL ends in /v1).
Exits non-zero (with the failing check) when something is off."""
import sys

import openai


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    models = client.models.list()
    assert [m.id for m in models.data] == [model], models

    # Completions, greedy: the same request twice gives the same text.
    a = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0)
    b = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert a.choices[0].text == b.choices[0].text, (a, b)
    assert a.choices[0].finish_reason == "length", a
    assert a.usage.completion_tokens == 12, a.usage

    # Streaming gives the same text.
    parts = []
    for chunk in client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0,
                                           stream=True):
        parts.append(chunk.choices[0].text)
    assert "".join(parts) == a.choices[0].text, (parts, a)

    # Logprobs with alternatives; echo + max_tokens 0 scores the prompt (the first token has none).
    c = client.completions.create(model=model, prompt="Hello there", max_tokens=4, temperature=0, logprobs=3)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == 4 and len(lp.token_logprobs) == 4, lp
    assert all(len(t) >= 1 and max(t.values()) <= 0 for t in lp.top_logprobs), lp
    # Greedy: each token is the most likely one.
    assert all(abs(l - max(t.values())) < 1e-5 for l, t in zip(lp.token_logprobs, lp.top_logprobs)), lp
    e = client.completions.create(model=model, prompt="Hello there", max_tokens=0, echo=True, logprobs=1)
    elp = e.choices[0].logprobs
    assert e.choices[0].text == "Hello there", e
    assert elp.token_logprobs[0] is None and all(x <= 0 for x in elp.token_logprobs[1:]), elp
    assert len(elp.tokens) == len("Hello there"), elp  # a bytes tokenizer: one token per byte

    # Chat, plain and streamed.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0)
    assert chat.choices[0].message.role == "assistant", chat
    text = ""
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0,
                                                stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == chat.choices[0].message.content, (text, chat)
    chat_lp = client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0,
                                             logprobs=True, top_logprobs=2)
    content = chat_lp.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content), content

    # A bad request is an error the client raises with the server's message.
    try:
        client.completions.create(model=model, prompt="x", max_tokens=-1)
        raise AssertionError("max_tokens -1 was accepted")
    except openai.BadRequestError as err:
        assert "max_tokens" in str(err), err
    try:
        client.completions.create(model="no-such-model", prompt="x")
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as err:
        assert "does not exist" in str(err), err
    print("openai client: all checks passed")


if __name__ == "__main__":
    main()
