/*
 * qemu_plugin_api.h: the subset of QEMU 7.2's TCG plugin API (plugin API version 1) that
 * libglassbox-trace.so uses, declared by hand because Debian ships no qemu-plugin.h.
 *
 * Source: include/qemu/qemu-plugin.h of QEMU 7.2 (same names, types and enum values; ABI
 * checked against the symbols exported by Debian 12's qemu-system-x86_64 7.2). Do not follow a
 * newer header: QEMU 8.x/9.x changed qemu_plugin_insn_data, the inline ops and the version.
 *
 * Lifetimes (from the QEMU documentation): `info` passed to qemu_plugin_install lives only
 * during that call; argv lives as long as the plugin. A struct qemu_plugin_tb or
 * qemu_plugin_insn handle, and the bytes qemu_plugin_insn_data points to, are valid only for
 * the duration of the translation callback that received them: copy what you need.
 *
 * Threading: translation callbacks may run concurrently on several vCPU threads (MTTCG);
 * an execution callback runs on the thread of the vCPU that executes the TB.
 */
#ifndef GLASSBOX_SERVICES_TRACE_PLUGIN_QEMU_PLUGIN_API_H
#define GLASSBOX_SERVICES_TRACE_PLUGIN_QEMU_PLUGIN_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* The API version this plugin is built against; QEMU 7.2 accepts 0..1. */
#define GLASSBOX_QEMU_PLUGIN_VERSION 1

/* Unique plugin ID, passed to qemu_plugin_install and the global callbacks. */
typedef uint64_t qemu_plugin_id_t;

/* System information for plugins; live only during qemu_plugin_install. */
typedef struct qemu_info_t {
  const char* target_name; /* e.g. "x86_64" */
  struct {
    int min; /* minimum plugin API level QEMU supports */
    int cur; /* current plugin API level */
  } version;
  bool system_emulation; /* full-system (softmmu) emulation? */
  union {
    struct {
      int smp_vcpus; /* initial number of vCPUs */
      int max_vcpus; /* maximum possible number of vCPUs (hotplug included) */
    } system;
  };
} qemu_info_t;

/* Opaque handles, valid only during the translation callback. */
struct qemu_plugin_tb;
struct qemu_plugin_insn;

/* Whether a callback reads or writes the vCPU's registers (unused by QEMU 7.2 itself). */
enum qemu_plugin_cb_flags {
  QEMU_PLUGIN_CB_NO_REGS = 0,
  QEMU_PLUGIN_CB_R_REGS = 1,
  QEMU_PLUGIN_CB_RW_REGS = 2,
};

/* Inline operations; 7.2 has exactly one: *(uint64_t*)ptr += imm, not atomic. */
enum qemu_plugin_op {
  QEMU_PLUGIN_INLINE_ADD_U64 = 0,
};

typedef void (*qemu_plugin_simple_cb_t)(qemu_plugin_id_t id);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);

/* Exported by the plugin: the API version it was built against. */
extern QEMU_PLUGIN_EXPORT int qemu_plugin_version;

/* Exported by the plugin: called once at load. Returns 0 when loaded; non-zero makes QEMU
 * refuse the plugin (and exit). */
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc,
                                           char** argv);

/* Calls `cb` on every TB translation. */
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);

/* Calls `cb(vcpu_index, userdata)` every time `tb` executes. */
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);

/* Emits `op` on `ptr` with `imm` inline, every time `tb` executes (shared by all vCPUs). */
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb* tb, enum qemu_plugin_op op,
                                              void* ptr, uint64_t imm);

/* Number of insns in `tb`. */
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);

/* Guest virtual address of the first insn of `tb`. */
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb* tb);

/* Handle of insn `idx` (0-based, < qemu_plugin_tb_n_insns) of `tb`. */
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);

/* Pointer to the insn's bytes (qemu_plugin_insn_size of them); valid during the callback.
 * QEMU 7.2 returns a pointer; later versions copy into a buffer instead. */
const void* qemu_plugin_insn_data(const struct qemu_plugin_insn* insn);

/* Size of the insn in bytes. */
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn* insn);

/* Guest virtual address of the insn. */
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn* insn);

/* Host address of the insn's first byte inside QEMU's mapping of guest RAM (an hva, not a gpa),
 * or NULL when the code is not RAM-backed. */
void* qemu_plugin_insn_haddr(const struct qemu_plugin_insn* insn);

/* Calls `cb(id, userdata)` once when execution has finished (QEMU exiting). */
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);

/* Writes `string` to QEMU's log (shown only with `-d plugin`). */
void qemu_plugin_outs(const char* string);

#ifdef __cplusplus
}
#endif

#endif /* GLASSBOX_SERVICES_TRACE_PLUGIN_QEMU_PLUGIN_API_H */
