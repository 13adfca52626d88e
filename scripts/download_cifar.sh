#!/usr/bin/env bash
# Fetch and unpack the python versions of CIFAR-10 and CIFAR-100 into ROOT (the trainers' --data_path):
#   ROOT/cifar-10-batches-py/  and  ROOT/cifar-100-python/
# Each archive is checked against its published md5 before unpacking; data sets already present are skipped.
# Usage: bash scripts/download_cifar.sh ROOT
set -euo pipefail

if [[ $# -ne 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    echo "usage: bash scripts/download_cifar.sh ROOT   (e.g. bash scripts/download_cifar.sh data)" >&2
    exit 2
fi
ROOT=$1
BASE_URL=https://www.cs.toronto.edu/~kriz
# archive name, md5 of the archive, folder it unpacks to
DATASETS=(
    "cifar-10-python.tar.gz c58f30108f718f92721af3b95e74349a cifar-10-batches-py"
    "cifar-100-python.tar.gz eb9058c3a382ffc7106e4002c42a8d85 cifar-100-python"
)

fetch() {  # fetch URL DEST
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null; then
        wget -O "$2" "$1"
    else
        echo "error: neither curl nor wget is installed; install one of them" >&2
        exit 1
    fi
}

md5_of() {  # md5_of FILE
    if command -v md5sum >/dev/null; then
        md5sum "$1" | cut -d' ' -f1
    else
        md5 -q "$1"
    fi
}

mkdir -p "$ROOT"
for entry in "${DATASETS[@]}"; do
    read -r archive md5 folder <<< "$entry"
    if [[ -d "$ROOT/$folder" ]]; then
        echo "$ROOT/$folder exists; skipping $archive"
        continue
    fi
    tmp="$ROOT/$archive.part"
    echo "downloading $BASE_URL/$archive"
    fetch "$BASE_URL/$archive" "$tmp"
    got=$(md5_of "$tmp")
    if [[ "$got" != "$md5" ]]; then
        rm -f "$tmp"
        echo "error: $archive has md5 $got, expected $md5; the download is damaged, run this script again" >&2
        exit 1
    fi
    tar -xzf "$tmp" -C "$ROOT"
    rm -f "$tmp"
    echo "unpacked $ROOT/$folder"
done
