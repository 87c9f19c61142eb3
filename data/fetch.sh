#!/usr/bin/env bash
# Puts the cats-vs-dogs photos in data/dogs-vs-cats/{train,test}:
#   train/: cat.N.jpg and dog.N.jpg with N < 9000 (18,000 photos: training and validation)
#   test/:  N = 9000..9999 (2,000 photos never used for training or model selection)
# Sources, in order: $CATDOG_DATA_SOURCE, ../shared/data/dogs-vs-cats (a Kaggle-layout copy),
# else Microsoft's public PetImages archive (downloaded; ImageFolder layout Cat/ Dog/).
set -euo pipefail
cd "$(dirname "$0")"
dest="dogs-vs-cats"

find_source() {
  for s in "${CATDOG_DATA_SOURCE:-}" ../../shared/data/dogs-vs-cats ../shared/data/dogs-vs-cats; do
    [ -n "$s" ] || continue
    if [ -d "$s/train" ]; then echo "$s/train"; return; fi
    if [ -d "$s" ] && ls "$s" | grep -qE '^(cat|dog)\.[0-9]+\.jpg$'; then echo "$s"; return; fi
  done
}

if [ -d "$dest/train" ] && [ -n "$(ls -A "$dest/train" 2>/dev/null)" ]; then
  echo "data/$dest already holds $(find "$dest/train" -type f | wc -l) training and $(find "$dest/test" -type f 2>/dev/null | wc -l) test images"
  exit 0
fi

src="$(find_source || true)"
if [ -n "$src" ]; then
  src="$(cd "$src" && pwd)"
  echo "copying from $src"
  mkdir -p "$dest/train" "$dest/test"
  # Hard links where possible (no extra space), else copies.
  link() { xargs -r cp -l -t "$2" < "$1" 2>/dev/null || xargs -r cp -t "$2" < "$1"; }
  (cd "$src" && ls | grep -E '^(cat|dog)\.[0-9]{1,4}\.jpg$' | awk -F. '$2 <  9000' | sed "s|^|$src/|") > "$dest/.train.list"
  (cd "$src" && ls | grep -E '^(cat|dog)\.[0-9]{1,4}\.jpg$' | awk -F. '$2 >= 9000' | sed "s|^|$src/|") > "$dest/.test.list"
  link "$dest/.train.list" "$dest/train"
  link "$dest/.test.list" "$dest/test"
  rm -f "$dest/.train.list" "$dest/.test.list"
else
  url="https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
  echo "no local copy found; downloading Microsoft PetImages (about 800 MB)"
  mkdir -p "$dest"
  curl -fL --retry 3 -o "$dest/petimages.zip" "$url"
  unzip -q "$dest/petimages.zip" -d "$dest/unpacked"
  mkdir -p "$dest/train" "$dest/test"
  # The last 1,000 photos of each class are the held-out test set.
  for class in Cat Dog; do
    mkdir -p "$dest/train/$class" "$dest/test/$class"
    for f in "$dest/unpacked/PetImages/$class"/*.jpg; do
      n="$(basename "$f" .jpg)"
      if [ "$n" -ge 11500 ]; then mv "$f" "$dest/test/$class/"; else mv "$f" "$dest/train/$class/"; fi
    done
  done
  rm -rf "$dest/unpacked" "$dest/petimages.zip"
  echo "note: PetImages contains some empty or corrupt JPEGs; catdog skips and lists them"
fi
echo "data/$dest: $(find "$dest/train" -type f | wc -l) training images, $(find "$dest/test" -type f | wc -l) test images"
