#!/usr/bin/env python3
"""A standard TUF client (python-tuf's ngclient) reading a palier repository over HTTP.

usage: tuf_client.py REPO_DIR TARGET_NAME WORK_DIR

Serves REPO_DIR on a free loopback port, pins REPO_DIR/metadata/1.root.json, refreshes,
finds TARGET_NAME, downloads it (hash and length checked by the client), and prints one
JSON document: the target's length, sha256, the downloaded file's path and its `custom`.
"""
import functools
import http.server
import json
import os
import sys
import threading

from tuf.ngclient import Updater


def main() -> int:
    repo_dir, target_name, work = sys.argv[1], sys.argv[2], sys.argv[3]
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=repo_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        meta_dir = os.path.join(work, "metadata")
        dl_dir = os.path.join(work, "downloads")
        os.makedirs(meta_dir, exist_ok=True)
        os.makedirs(dl_dir, exist_ok=True)
        with open(os.path.join(repo_dir, "metadata", "1.root.json"), "rb") as f:
            pinned_root = f.read()
        updater = Updater(
            metadata_dir=meta_dir,
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{base}/targets/",
            target_dir=dl_dir,
            bootstrap=pinned_root,
        )
        updater.refresh()
        info = updater.get_targetinfo(target_name)
        if info is None:
            print(json.dumps({"error": f"target {target_name} not found"}))
            return 1
        path = updater.download_target(info)
        print(json.dumps({
            "length": info.length,
            "sha256": info.hashes["sha256"],
            "path": path,
            "custom": info.custom,
        }))
        return 0
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
