#!/usr/bin/env bash
# Fetch the CIFAR-N human noisy labels (Wei et al., "Learning with Noisy Labels Revisited: A Study Using Real-World
# Human Annotations", ICLR 2022) into DATA_PATH/cifar-n/, where --noise_kind human --noise_label ... looks for them:
#   DATA_PATH/cifar-n/CIFAR-10_human.pt    (--dataset cifar10: aggre, random1, random2, random3, worst)
#   DATA_PATH/cifar-n/CIFAR-100_human.pt   (--dataset cifar100: noisy)
# The files come from the authors' repository https://github.com/UCSC-REAL/cifar-10-100n and are licensed
# CC BY-NC 4.0 (non-commercial use, with attribution); this project does not ship them. CIFAR itself comes from
# scripts/download_cifar.sh. Files already present are skipped.
# Usage: bash scripts/download_cifar_n.sh DATA_PATH
set -euo pipefail

if [[ $# -ne 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    echo "usage: bash scripts/download_cifar_n.sh DATA_PATH   (e.g. bash scripts/download_cifar_n.sh data)" >&2
    exit 2
fi
DEST=$1/cifar-n
BASE_URL=https://raw.githubusercontent.com/UCSC-REAL/cifar-10-100n/main/data
FILES=(CIFAR-10_human.pt CIFAR-100_human.pt)

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

mkdir -p "$DEST"
for name in "${FILES[@]}"; do
    if [[ -s "$DEST/$name" ]]; then
        echo "$DEST/$name already present; skipping"
        continue
    fi
    fetch "$BASE_URL/$name" "$DEST/$name.part"
    mv "$DEST/$name.part" "$DEST/$name"
    echo "wrote $DEST/$name"
done
