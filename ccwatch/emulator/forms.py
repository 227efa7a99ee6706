"""Pre-signed storage requests, shaped like the real storage host's (an S3 bucket behind
storage.cloudconvert.com): the POST-policy upload form and the expiring download URL.

The form's parameters come in the recorded order (``acl``, ``key``, ``success_action_status``,
``X-Amz-Credential``, ``X-Amz-Algorithm``, ``X-Amz-Date``, ``Policy``, ``X-Amz-Signature``); the
policy is base64 JSON with its ``expiration``, signed with the emulator's own key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
LIVE_FORM_TTL_S = 12 * 3600.0  # the policy lifetimes the recorded forms carry
SANDBOX_FORM_TTL_S = 6 * 3600.0


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class Signer:
    def __init__(self, key: bytes, bucket: str) -> None:
        self._key = key
        self.bucket = bucket

    def sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def upload_form(self, storage_url: str, task_id: str, now: float, ttl_s: float
                    ) -> dict[str, Any]:
        date = _utc(now).strftime("%Y%m%dT%H%M%SZ")
        credential = f"ccwatch-emulator/{date[:8]}/local/s3/aws4_request"
        expiration = _utc(now + ttl_s).strftime("%Y-%m-%dT%H:%M:%SZ")
        policy_doc = {"expiration": expiration, "conditions": [
            {"acl": "private"}, {"bucket": self.bucket}, ["starts-with", "$key", f"{task_id}/"],
            {"success_action_status": "201"}, {"X-Amz-Date": date},
            {"X-Amz-Credential": credential}, {"X-Amz-Algorithm": ALGORITHM}]}
        policy = base64.b64encode(json.dumps(policy_doc, separators=(",", ":")).encode()).decode()
        return {"url": f"{storage_url}/{self.bucket}", "parameters": {
            "acl": "private", "key": f"{task_id}/${{filename}}", "success_action_status": "201",
            "X-Amz-Credential": credential, "X-Amz-Algorithm": ALGORITHM, "X-Amz-Date": date,
            "Policy": policy, "X-Amz-Signature": self.sign(policy)}}

    def check_form(self, fields: dict[str, str], now: float) -> tuple[str | None, str]:
        """(task id, "") for a good form; (None or the task id, S3's reason) when refused."""
        policy = fields.get("Policy", "")
        if not hmac.compare_digest(fields.get("X-Amz-Signature", ""), self.sign(policy)):
            return None, "The request signature we calculated does not match the signature you provided."
        try:
            doc = json.loads(base64.b64decode(policy))
            expires = dt.datetime.strptime(doc["expiration"], "%Y-%m-%dT%H:%M:%SZ")
            prefix = next(c[2] for c in doc["conditions"]
                          if isinstance(c, list) and c[:2] == ["starts-with", "$key"])
        except (ValueError, KeyError, TypeError, StopIteration):
            return None, "Invalid Policy: Invalid JSON."
        task_id = str(prefix).rstrip("/")
        if not fields.get("key", "").startswith(str(prefix)):
            return task_id, "Invalid according to Policy: Policy Condition failed: " \
                            '["starts-with", "$key", "' + str(prefix) + '"]'
        if expires.replace(tzinfo=dt.UTC) < _utc(now):
            return task_id, "Invalid according to Policy: Policy expired."
        return task_id, ""

    def download_url(self, storage_url: str, task_id: str, filename: str, expires: int) -> str:
        key = f"{task_id}/{filename}"
        signature = quote(self.sign(f"GET:{key}:{expires}"), safe="")
        disposition = quote(f'attachment; filename="{filename}"', safe="")
        return (f"{storage_url}/{self.bucket}/{task_id}/{quote(filename)}?AWSAccessKeyId=emulator"
                f"&Expires={expires}&Signature={signature}"
                f"&response-content-disposition={disposition}")

    def download_ok(self, task_id: str, filename: str, expires: str, signature: str) -> bool:
        good = self.sign(f"GET:{task_id}/{filename}:{expires}")
        return hmac.compare_digest(signature, good) and expires.isdigit()
