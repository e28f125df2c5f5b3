#!/usr/bin/env bash
# Fails when a tracked C/C++ file differs from .clang-format (Google base, 100 columns).
# Fix with: clang-format -i $(git ls-files '*.cpp' '*.hpp' '*.c')
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v clang-format >/dev/null; then
  echo "clang-format missing: install the Debian package clang-format" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.c' 2>/dev/null || find . -path ./build -prune -o \( -name '*.cpp' -o -name '*.hpp' -o -name '*.c' \) -print)
clang-format --dry-run --Werror "${files[@]}"
echo "format: ${#files[@]} files clean"
