/* Reading USDT arguments from a BPF program attached to a USDT probe (SEC("usdt")).
 *
 * The loader (ebpf_core::link::Usdt) writes one struct usdt_spec per probe site into the
 * usdt_specs map and attaches the site with the spec's index as the attach cookie; the
 * functions here find the spec through bpf_get_attach_cookie() and read argument N from the
 * registers or the memory the spec names. This header is the one definition of the layout:
 * the Rust side is checked against this object's BTF.
 */
#ifndef NETSTACK_USDT_H
#define NETSTACK_USDT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define USDT_MAX_ARGS 12
#define USDT_MAX_SPECS 256

enum usdt_arg_kind {
	USDT_ARG_CONSTANT = 0,
	USDT_ARG_REGISTER = 1,
	USDT_ARG_MEMORY = 2,
};

struct usdt_arg_spec {
	/* The constant, or what is added to the register's value for a memory argument. */
	__u64 value;
	/* enum usdt_arg_kind */
	__u32 kind;
	/* Offset of the register in the kernel's struct pt_regs. */
	__u16 reg_offset;
	__u8 is_signed;
	/* Bytes: 1, 2, 4 or 8. */
	__u8 size;
};

struct usdt_spec {
	struct usdt_arg_spec args[USDT_MAX_ARGS];
	/* The cookie the attaching program gave, for usdt_cookie(). */
	__u64 cookie;
	__u16 arg_count;
	__u16 reserved[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, USDT_MAX_SPECS);
	__type(key, __u32);
	__type(value, struct usdt_spec);
} usdt_specs SEC(".maps");

struct pt_regs;

static __always_inline struct usdt_spec *usdt_spec_of(struct pt_regs *ctx)
{
	__u32 id = bpf_get_attach_cookie(ctx);

	return bpf_map_lookup_elem(&usdt_specs, &id);
}

/* How many arguments the probe site has, or a negative errno. */
static __always_inline int usdt_arg_count(struct pt_regs *ctx)
{
	struct usdt_spec *spec = usdt_spec_of(ctx);

	return spec ? spec->arg_count : -3 /* ESRCH */;
}

/* The cookie given when the probe was attached. */
static __always_inline __u64 usdt_cookie(struct pt_regs *ctx)
{
	struct usdt_spec *spec = usdt_spec_of(ctx);

	return spec ? spec->cookie : 0;
}

/* Reads argument n (from 0) into *value, sign- or zero-extended; 0 or a negative errno. */
static __always_inline int usdt_arg(struct pt_regs *ctx, __u64 n, long *value)
{
	struct usdt_spec *spec = usdt_spec_of(ctx);
	struct usdt_arg_spec *arg;
	__u64 raw = 0;
	int shift, err;

	if (!spec)
		return -3; /* ESRCH */
	if (n >= USDT_MAX_ARGS || n >= spec->arg_count)
		return -2; /* ENOENT */
	arg = &spec->args[n];
	switch (arg->kind) {
	case USDT_ARG_CONSTANT:
		raw = arg->value;
		break;
	case USDT_ARG_REGISTER:
		err = bpf_probe_read_kernel(&raw, sizeof(raw), (void *)ctx + arg->reg_offset);
		if (err)
			return err;
		break;
	case USDT_ARG_MEMORY:
		err = bpf_probe_read_kernel(&raw, sizeof(raw), (void *)ctx + arg->reg_offset);
		if (err)
			return err;
		err = bpf_probe_read_user(&raw, sizeof(raw), (void *)(raw + arg->value));
		if (err)
			return err;
		break;
	default:
		return -22; /* EINVAL */
	}
	/* Keep the low `size` bytes (little-endian), then extend. */
	shift = 64 - (arg->size & 0xf) * 8;
	if (shift < 0 || shift > 56)
		shift = 0;
	raw <<= shift;
	*value = arg->is_signed ? (long)raw >> shift : (long)(raw >> shift);
	return 0;
}

#endif
