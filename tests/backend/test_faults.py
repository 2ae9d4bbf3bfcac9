"""A model folder changed on disk while the model is loaded: the server keeps answering, the model keeps working."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import make_model


def test_model_folder_deleted_and_replaced_while_loaded(client: TestClient, local_models: Path) -> None:
    folder = local_models / "tiny-llama"
    assert client.post("/model/upload", params={"model_path": "tiny-llama"}).status_code == 200
    shutil.rmtree(folder)  # memory-mapped weights stay readable: their files live on until unmapped
    reply = client.post(
        "/chat", json={"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 3, "stream": False}
    )
    assert reply.status_code == 200, reply.text
    listed = {m["id"] for m in client.get("/model/local-models").json()["models"]}
    assert "tiny-llama" not in listed
    make_model(folder, "gpt2")  # another model now sits where the loaded one was
    assert client.get("/model/current").json()["metadata"]["model_id"] == "tiny-llama"
    again = client.post(
        "/chat", json={"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 3, "stream": False}
    )
    assert again.status_code == 200
    assert client.post("/model/unload").json()["status"] == "unloaded"
    reloaded = client.post("/model/upload", params={"model_path": "tiny-llama"})
    assert reloaded.status_code == 200
    assert reloaded.json()["metadata"]["model_type"] == "gpt2"
