"""A real S3-compatible server for tests: moto's standalone server (``moto[server]``) as a
process of its own on a free port, and a bucket in it. Nothing is downloaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests

from tests.services import free_port
from tests.services import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: What the API and the test's own client sign requests with (moto accepts any).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "multitune-test",
    "AWS_SECRET_ACCESS_KEY": "multitune-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self) -> S3Client:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url)

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def multipart_uploads(self) -> list[str]:
        """The keys of multipart uploads started and neither completed nor aborted."""
        answer = self.client().list_multipart_uploads(Bucket=self.bucket)
        return sorted(upload["Key"] for upload in answer.get("Uploads", []))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's server on 127.0.0.1 with one empty bucket, until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **CREDENTIALS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(url), 60, f"the S3 server on port {port}")
        server = S3Server(endpoint_url=url, bucket=f"multitune-{uuid.uuid4().hex[:8]}")
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
