/* Shared definitions for the project's BPF C programs.
 *
 * Programs include libbpf's <bpf/bpf_helpers.h> (Debian's libbpf-dev) for SEC(), helper
 * prototypes and map-definition macros; this header adds what every program of ours uses.
 */
#ifndef NETSTACK_COMPAT_H
#define NETSTACK_COMPAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Every object is GPL so GPL-only helpers stay available. */
#define NETSTACK_LICENSE char LICENSE[] SEC("license") = "GPL"

/* A value the loader may rewrite before load ("compile once, template at load"). */
#define TEMPLATE_CONST(type, name, value) volatile const type name = value

#endif
