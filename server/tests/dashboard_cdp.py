#!/usr/bin/env python3
"""Load dashboard pages in headless Chromium and say where given elements are laid out.

    dashboard_cdp.py OUTDIR AUTHORIZATION WIDTH HEIGHT NAME=URL=SELECTOR,SELECTOR... ...

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in,
fd 4 out, one JSON message per NUL), so no port is opened and no script runs in the page:
the layout is read by the browser's own evaluation, outside the page's CSP. For each page:
navigate with the Authorization header, wait for the load event, take a PNG of the first
viewport (OUTDIR/NAME.png), and measure each selector's first element. Prints one JSON
object: {NAME: {"status": HTTP status, "viewport": [w, h], "title": ..., "elements":
{SELECTOR: {"found": bool, "text": first 300 characters, "top": px, "bottom": px, "in_first_viewport": bool}}}}.
"""

import base64
import json
import os
import subprocess
import sys
import time

MEASURE = """
(() => {
  const out = {};
  for (const sel of %s) {
    const el = document.querySelector(sel);
    if (!el) { out[sel] = {found: false}; continue; }
    const r = el.getBoundingClientRect();
    out[sel] = {found: true, text: el.textContent.trim().slice(0, 300), top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                in_first_viewport: r.top >= 0 && r.top < window.innerHeight && r.left < window.innerWidth && r.height > 0};
  }
  return JSON.stringify({viewport: [window.innerWidth, window.innerHeight], title: document.title, elements: out,
                         scroll_height: document.documentElement.scrollHeight});
})()
"""


class Browser:
    def __init__(self, profile, width, height):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def fds():
            # Through fresh descriptors first: a pipe end may itself be 3 or 4.
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.w = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.r = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.r.fileno(), 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name, session, timeout=60):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == name and e.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    outdir, auth, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pages = []
    for arg in sys.argv[5:]:
        name, url, selectors = arg.split("=", 2)
        pages.append((name, url, [s for s in selectors.split(",") if s]))
    b = Browser(os.path.join(outdir, "profile"), width, height)
    result = {}
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.call("Page.enable", session=session)
        b.call("Network.enable", session=session)
        b.call("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth}}, session=session)
        b.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        for name, url, selectors in pages:
            b.events = [e for e in b.events if e.get("method") != "Page.loadEventFired"]
            b.call("Page.navigate", {"url": url}, session=session)
            b.wait_event("Page.loadEventFired", session)
            status = None
            for e in b.events:
                if e.get("method") == "Network.responseReceived" and e["params"].get("type") == "Document":
                    status = e["params"]["response"]["status"]
            b.events = [e for e in b.events if e.get("method") != "Network.responseReceived"]
            value = b.call("Runtime.evaluate", {"expression": MEASURE % json.dumps(selectors), "returnByValue": True}, session=session)
            facts = json.loads(value["result"]["value"])
            shot = b.call("Page.captureScreenshot", {"format": "png"}, session=session)
            path = os.path.join(outdir, f"{name}.png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            facts["status"] = status
            facts["screenshot"] = path
            result[name] = facts
    finally:
        b.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
