/*
 * cpu_features_mask.c: make a process on an AVX-512 machine (AMD Zen 4)
 * see an AVX2-only CPU, such as a Zen 3, so that the AVX2 kernels of
 * voxpipe and of onnxruntime (MLAS) can be timed without such a machine.
 *
 * Build and use (Linux x86-64, on a CPU with CPUID faulting:
 * `grep cpuid_fault /proc/cpuinfo`):
 *
 *     gcc -shared -fPIC -O2 -o /tmp/mask.so benches/cpu_features_mask.c -ldl
 *     cargo bench --bench smart_turn --no-run   # build unmasked first:
 *         # under the mask, cargo and any rebuild run masked too
 *     LD_PRELOAD=/tmp/mask.so cargo bench --bench smart_turn -- smart_turn/decision
 *     LD_PRELOAD=/tmp/mask.so target/release/deps/smart_turn-<hash> --bench
 *     LD_PRELOAD=/tmp/mask.so /tmp/ort/bin/python benches/smart_turn_onnxruntime.py /tmp
 *     LD_PRELOAD=/tmp/mask.so cargo test --release --lib smart_turn
 *
 * It writes "cpu_features_mask: ..." to stderr once per process, so a run
 * that did not get the mask (no CPUID faulting) is visible.
 *
 * How: a constructor turns on CPUID faulting for the process
 * (`arch_prctl(ARCH_SET_CPUID, 0)`); from then on every `cpuid` raises
 * SIGSEGV. The handler executes the real `cpuid` (faulting switched off
 * for the moment, as it is per thread), clears the bits below, writes the
 * result into the interrupted context's registers and steps over the
 * two-byte instruction (0F A2). Faulting is copied to threads and forked
 * children and reset by execve, where LD_PRELOAD brings this back.
 *
 * Hidden: every AVX-512 bit of leaf 7 (EBX, ECX, EDX), AVX512-VNNI
 * (leaf 7 ECX bit 11), AVX-VNNI and AVX512-BF16 (leaf 7 subleaf 1 EAX bits
 * 4 and 5) and the newer AVX-IFMA, AVX-VNNI-INT8/INT16, AVX-NE-CONVERT and
 * AVX10 bits, and GFNI, which Zen 3 also lacks. Kept: AVX, AVX2, FMA, F16C,
 * BMI1/2, VAES and VPCLMULQDQ (all of which Zen 3 has).
 *
 * Limits: cpuid executed before this library's constructor (the dynamic
 * loader's own, which picks glibc's memcpy and string functions) is not
 * seen; those may still use AVX-512. Code that reads the features from
 * somewhere else than `cpuid` (e.g. /proc/cpuinfo) is not fooled either.
 * Other libraries' SIGSEGV handlers are kept behind this one: `sigaction`
 * for SIGSEGV is intercepted, and faults that are not a `cpuid` go to the
 * handler the program installed (or the default, which dumps core). A
 * program that installs one with `signal()` instead (glibc does not route
 * it through `sigaction`) replaces this library's: Rust and CPython use
 * `sigaction`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

/* The action the program asked for on SIGSEGV, run for faults that are not
 * a `cpuid`. */
static struct sigaction program_action;
static int active;

static long set_cpuid_allowed(int allowed)
{
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, allowed);
}

static void clear_bits(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    enum { EAX, EBX, ECX, EDX };
    if (leaf == 7 && subleaf == 0) {
        /* avx512 f, dq, ifma, pf, er, cd, bw, vl */
        r[EBX] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) |
                    (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        /* avx512 vbmi, vbmi2, gfni, vnni, bitalg, vpopcntdq */
        r[ECX] &= ~((1u << 1) | (1u << 6) | (1u << 8) | (1u << 11) |
                    (1u << 12) | (1u << 14));
        /* avx512 4vnniw, 4fmaps, vp2intersect, fp16 */
        r[EDX] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
    } else if (leaf == 7 && subleaf == 1) {
        /* avx-vnni, avx512-bf16, avx-ifma */
        r[EAX] &= ~((1u << 4) | (1u << 5) | (1u << 23));
        /* avx-vnni-int8, avx-ne-convert, avx-vnni-int16, avx10 */
        r[EDX] &= ~((1u << 4) | (1u << 5) | (1u << 10) | (1u << 19));
    } else if (leaf == 0x24) {
        /* AVX10 converged vector ISA leaf: nothing to report. */
        r[EAX] = r[EBX] = r[ECX] = r[EDX] = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)g[REG_RIP];
    /* A faulting cpuid reports si_code SI_KERNEL and a readable RIP. */
    if (info->si_code == SI_KERNEL && ip[0] == 0x0F && ip[1] == 0xA2) {
        uint32_t leaf = (uint32_t)g[REG_RAX], subleaf = (uint32_t)g[REG_RCX];
        uint32_t r[4];
        set_cpuid_allowed(1);
        __asm__ volatile("cpuid"
                         : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                         : "a"(leaf), "c"(subleaf));
        set_cpuid_allowed(0);
        clear_bits(leaf, subleaf, r);
        /* cpuid writes the low 32 bits and zeroes the upper ones. */
        g[REG_RAX] = r[0];
        g[REG_RBX] = r[1];
        g[REG_RCX] = r[2];
        g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        return;
    }
    /* Not ours: hand it to the program's handler, or die as it would. */
    if (program_action.sa_flags & SA_SIGINFO) {
        if (program_action.sa_sigaction != NULL) {
            program_action.sa_sigaction(sig, info, context);
            return;
        }
    } else if (program_action.sa_handler != SIG_DFL &&
               program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL); /* the fault repeats on return and kills */
}

/* Programs that install their own SIGSEGV handler (Rust's stack-overflow
 * guard, Python's faulthandler, ...) get it run behind this one. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    static sigaction_fn real;
    if (real == NULL)
        real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (!active || sig != SIGSEGV)
        return real(sig, act, old);
    struct sigaction wanted;
    if (act != NULL)
        wanted = *act; /* before `old`, which may be the same struct */
    if (old != NULL)
        *old = program_action;
    if (act != NULL)
        program_action = wanted;
    return 0;
}

__attribute__((constructor)) static void install(void)
{
    struct sigaction sa;
    sigaction_fn real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    /* No other signal runs inside: one would see cpuid unmasked while the
     * handler has faulting off. */
    sigfillset(&sa.sa_mask);
    memset(&program_action, 0, sizeof program_action);
    program_action.sa_handler = SIG_DFL;
    /* A handler installed before this library loaded stays behind it. */
    if (real(SIGSEGV, &sa, &program_action) != 0 || set_cpuid_allowed(0) != 0) {
        fprintf(stderr, "cpu_features_mask: no CPUID faulting here, "
                        "features NOT masked\n");
        return;
    }
    active = 1;
    fprintf(stderr, "cpu_features_mask: AVX-512 and VNNI hidden (pid %d)\n",
            (int)getpid());
}
