"""Drives one job of a tower-accepted server to its end with the Azure SDK's
long-running-operation poller: azure-core's `LROPoller` with `LROBasePolling`
(which follows `Operation-Location`, reads `status` case-insensitively and
fetches the final `resourceLocation`).

Usage: poll.py BASE_URL PATH JSON_BODY
Prints one JSON line: {"status": <the poller's last status>, "result": <the
final resource's JSON>} or, when the poller raises, {"status": ..., "error":
<its message>}. Run by tests/azure_interop.rs.
"""

import json
import sys

from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import LROBasePolling
from azure.core.rest import HttpRequest


def main() -> None:
    base_url, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
    client = PipelineClient(base_url=base_url)
    request = HttpRequest("POST", client.format_url(path), json=json.loads(body))
    # What generated Azure SDK clients do: send the initial request through
    # the pipeline and hand its PipelineResponse to the poller.
    initial = client.send_request(request, _return_pipeline_response=True)
    if initial.http_response.status_code != 202:
        raise SystemExit(f"expected 202, got {initial.http_response.status_code}")

    def deserialize(pipeline_response):
        return pipeline_response.http_response.json()

    poller = LROPoller(client, initial, deserialize, LROBasePolling(timeout=1))
    try:
        result = poller.result(timeout=60)
    except HttpResponseError as error:
        print(json.dumps({"status": poller.status(), "error": str(error)}))
        return
    if not poller.done():
        raise SystemExit("the poller did not finish within 60 s")
    print(json.dumps({"status": poller.status(), "result": result}))


if __name__ == "__main__":
    main()
