#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the teleop page's browser test
# (test/ros/test_ui_browser.py), unless both are on PATH. Needs root (apt-get).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }
