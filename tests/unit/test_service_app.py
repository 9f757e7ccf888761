"""The app every service shares answers paths it does not serve with JSON, and hands the HTTP
API every path that is not its own (/metrics, /healthz, /readyz)."""

from __future__ import annotations

import httpx

from streamscribe.common.settings import KafkaSettings, TopicSettings
from streamscribe.ingest.app import create_app
from streamscribe.ingest.settings import IngestSettings


async def test_a_worker_without_the_api_answers_unknown_paths_with_json() -> None:
    app = create_app(IngestSettings(kafka=KafkaSettings(), topics=TopicSettings()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as http:
        missing = await http.get("/media/..%2F..%2Fetc")
        metrics = await http.get("/metrics")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "no such path" in missing.json()["error"]
    assert metrics.status_code == 200
    assert "streamscribe_" in metrics.text
