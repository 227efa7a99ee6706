"""Rebuild ``fixtures/*.json`` from the SDK repositories' recorded exchanges (not a test).

Usage: ``python tests/replay/make_fixtures.py GIT_DIR REPO COMMIT PATH...`` with ``GIT_DIR`` a clone
of ``REPO`` (e.g. cloudconvert/cloudconvert-ruby) and each ``PATH`` a VCR cassette (YAML) or a JSON
response fixture in it. Needs PyYAML for cassettes. Credentials (the Authorization header) are
dropped; bodies are kept as JSON, XML text, or, for files, their size and md5 only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HERE = Path(__file__).parent / "fixtures"
KEPT_HEADERS = ("content-type", "content-length", "content-disposition", "etag", "location",
                "x-ratelimit-limit", "x-ratelimit-remaining", "retry-after")
HOSTS = {"api.sandbox.cloudconvert.com": "api", "sync.api.sandbox.cloudconvert.com": "sync",
         "storage.cloudconvert.com": "storage"}


def _headers(raw: dict[str, list[str]]) -> dict[str, str]:
    lowered = {k.lower(): v[0] for k, v in raw.items()}
    return {k: lowered[k] for k in KEPT_HEADERS if k in lowered}


def _body(raw: Any, content_type: str) -> dict[str, Any]:
    data = raw if isinstance(raw, bytes) else str(raw or "").encode()
    if not data:
        return {"empty": True}
    if "json" in content_type:
        return {"json": json.loads(data)}
    if "xml" in content_type:
        return {"xml": data.decode()}
    return {"file": {"size": len(data), "md5": hashlib.md5(data, usedforsecurity=False).hexdigest()}}


def _form_fields(body: bytes) -> list[str]:
    """Names of a multipart body's parts, in order."""
    names = []
    for line in body.split(b"\r\n"):
        if line.lower().startswith(b"content-disposition: form-data; name="):
            names.append(line.split(b'name="', 1)[1].split(b'"', 1)[0].decode())
    return names


def _exchange(item: dict[str, Any]) -> dict[str, Any]:
    req, resp = item["request"], item["response"]
    url = urlsplit(req["uri"])
    req_headers = {k.lower(): v[0] for k, v in req["headers"].items()}
    req_type = req_headers.get("content-type", "")
    raw = req["body"].get("string", "")
    request: dict[str, Any] = {"method": req["method"].upper(), "host": HOSTS[url.netloc],
                               "path": url.path, "query": dict(parse_qsl(url.query))}
    if "json" in req_type:
        request["json"] = json.loads(raw)
    elif "multipart" in req_type:
        request["form_fields"] = _form_fields(raw if isinstance(raw, bytes) else raw.encode())
    headers = _headers(resp["headers"])
    return {"request": request,
            "response": {"status": resp["status"]["code"], "headers": headers,
                         **_body(resp["body"].get("string", ""), headers.get("content-type", ""))}}


def main(git_dir: str, repo: str, commit: str, *paths: str) -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!binary", lambda loader, node: base64.b64decode(
        loader.construct_scalar(node)))
    for path in paths:
        text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
                              check=True, capture_output=True).stdout
        source = {"repo": repo, "path": path, "commit": commit}
        if path.endswith(".yml"):
            cassette = yaml.load(text, Loader=Loader)  # a SafeLoader (plus !binary)
            doc = {"source": source, "exchanges": [_exchange(i)
                                                   for i in cassette["http_interactions"]]}
        else:
            doc = {"source": source, "body": json.loads(text)}
        out = HERE / f"{repo.split('/')[1].removeprefix('cloudconvert-')}-{Path(path).stem}.json"
        out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
