#!/usr/bin/env bash
# Builds every BPF C program under netstack/, tests/ (loader fixtures), examples/ (the library
# crates' runnable examples) and btf/ (BTF and CO-RE
# resolver fixtures, whose probe types exist in no kernel) and tracing/ (tracing programs, which
# some kernels refuse to load) into out/<dir>/<name>.o with clang-19.
# The objects are committed; `build.sh --check` rebuilds into a scratch directory and fails if
# anything differs from out/ (CI runs it, so the committed objects always match the sources).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
clang="${CLANG:-clang-19}"
if ! command -v "$clang" >/dev/null; then
	echo "build.sh: $clang not found (apt-get install -y clang-19 llvm-19 libbpf-dev)" >&2
	exit 1
fi
arch_include="/usr/include/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"

dest="$here/out"
check=0
if [[ "${1:-}" == "--check" ]]; then
	check=1
	dest="$(mktemp -d)"
	trap 'rm -rf "$dest"' EXIT
fi

build() {
	local src="$1" rel obj
	rel="${src#"$here"/}"
	obj="$dest/${rel%.c}.o"
	mkdir -p "$(dirname "$obj")"
	# Paths are remapped so the debug info (and so the object) is the same in any checkout.
	(cd "$here" && "$clang" -target bpf -mcpu=v3 -O2 -g -Wall -Werror \
		-ffile-prefix-map="$here"=. -fdebug-compilation-dir=. \
		-I include -idirafter "$arch_include" \
		-c "$rel" -o "$obj")
}

count=0
while IFS= read -r -d '' src; do
	build "$src"
	count=$((count + 1))
done < <(for dir in "$here/netstack" "$here/tests" "$here/btf" "$here/tracing" "$here/examples" "$here/link"; do [[ -d "$dir" ]] && find "$dir" -name '*.c' -print0; done | sort -z)

if [[ $check -eq 1 ]]; then
	if ! diff -r "$here/out" "$dest" >/dev/null; then
		echo "build.sh --check: bpf-programs/out/ differs from a fresh build of the sources:" >&2
		diff -rq "$here/out" "$dest" >&2 || true
		echo "run bpf-programs/build.sh and commit bpf-programs/out/" >&2
		exit 1
	fi
	echo "bpf-programs: $count objects reproduced bit for bit"
else
	echo "bpf-programs: built $count objects into out/"
fi
