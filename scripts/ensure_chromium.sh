#!/usr/bin/env bash
# Installs headless Chromium + ChromeDriver (Debian packages) for the HTML report's browser test
# when they are missing. Never fails the test command: where they cannot be installed, the
# browser test skips itself with a message saying so.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver for the browser test..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "could not install chromium; the browser test will be skipped" >&2
else
  echo "chromium/chromedriver missing and not root: the browser test will be skipped" >&2
fi
exit 0
