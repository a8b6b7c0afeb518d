//! Choosing the accelerator: KVM only when it can really run our guest.
//!
//! A `/dev/kvm` node proves little: some sandboxes offer a software KVM that
//! opens, creates VMs and runs real-mode code, then fails on the first SSE
//! instruction of a 64-bit kernel. So the probe asks KVM which CPU features
//! it can give a guest (a 64-bit Linux kernel needs at least x86-64-v2) and
//! runs a tiny guest to the end. Anything short of that means TCG.

use std::sync::mpsc;
use std::time::Duration;

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// TCG, and why KVM was not used.
    Tcg(String),
}

impl Accel {
    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg(_) => "tcg",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Accel::Kvm => "KVM (hardware virtualisation)".into(),
            Accel::Tcg(why) => format!("TCG (software emulation): {why}"),
        }
    }
}

/// CPUID leaf 1 ECX/EDX and leaf 0x8000_0001 EDX bits every 64-bit guest
/// kernel of ours uses (x86-64-v2).
const REQUIRED: &[(u32, char, u32, &str)] = &[
    (1, 'd', 26, "SSE2"),
    (1, 'c', 0, "SSE3"),
    (1, 'c', 9, "SSSE3"),
    (1, 'c', 13, "CMPXCHG16B"),
    (1, 'c', 19, "SSE4.1"),
    (1, 'c', 20, "SSE4.2"),
    (1, 'c', 23, "POPCNT"),
    (0x8000_0001, 'd', 29, "long mode"),
];

/// Real-mode code: `mov al, 0x2a; out 0x10, al; hlt`.
const PROBE_CODE: &[u8] = &[0xb0, 0x2a, 0xe6, 0x10, 0xf4];
const PROBE_PORT: u16 = 0x10;

/// Decides between KVM and TCG. Never panics; every failure is a reason.
pub fn probe() -> Accel {
    let (tx, rx) = mpsc::channel();
    // A broken KVM may hang in KVM_RUN: probe in a thread we can give up on.
    std::thread::spawn(move || {
        let _ = tx.send(probe_kvm());
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Accel::Kvm,
        Ok(Err(why)) => Accel::Tcg(why),
        Err(_) => Accel::Tcg("a test vCPU did not finish within 5 s".into()),
    }
}

fn probe_kvm() -> Result<(), String> {
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm ({e})"))?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID failed ({e})"))?;
    let entries = cpuid.as_slice();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(leaf, reg, bit, _)| {
            let value = entries
                .iter()
                .find(|e| e.function == *leaf && e.index == 0)
                .map(|e| if *reg == 'c' { e.ecx } else { e.edx })
                .unwrap_or(0);
            value & (1 << bit) == 0
        })
        .map(|(_, _, _, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "/dev/kvm cannot give a guest {} (a software KVM that cannot run a 64-bit kernel)",
            missing.join(", ")
        ));
    }
    run_probe_guest(&kvm)
}

fn run_probe_guest(kvm: &Kvm) -> Result<(), String> {
    let vm = kvm
        .create_vm()
        .map_err(|e| format!("KVM_CREATE_VM failed ({e})"))?;
    let size = 0x1000usize;
    // SAFETY: an anonymous private mapping, unmapped below.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err("mmap for the probe guest failed".into());
    }
    let result = (|| {
        // SAFETY: `mem` is a writable mapping of `size` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(PROBE_CODE.as_ptr(), mem as *mut u8, PROBE_CODE.len())
        };
        let region = kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0x1000,
            memory_size: size as u64,
            userspace_addr: mem as u64,
            flags: 0,
        };
        // SAFETY: the region stays mapped until the VM is dropped below.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION ({e})"))?;
        let mut vcpu = vm
            .create_vcpu(0)
            .map_err(|e| format!("KVM_CREATE_VCPU failed ({e})"))?;
        let mut sregs = vcpu
            .get_sregs()
            .map_err(|e| format!("KVM_GET_SREGS ({e})"))?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs)
            .map_err(|e| format!("KVM_SET_SREGS ({e})"))?;
        let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS ({e})"))?;
        regs.rip = 0x1000;
        regs.rflags = 2;
        vcpu.set_regs(&regs)
            .map_err(|e| format!("KVM_SET_REGS ({e})"))?;
        let mut saw_out = false;
        for _ in 0..16 {
            match vcpu.run().map_err(|e| format!("KVM_RUN failed ({e})"))? {
                VcpuExit::IoOut(port, data) if port == PROBE_PORT && data == [0x2a] => {
                    saw_out = true
                }
                VcpuExit::Hlt if saw_out => return Ok(()),
                other => return Err(format!("the test vCPU stopped unexpectedly ({other:?})")),
            }
        }
        Err("the test vCPU did not halt".into())
    })();
    drop(vm);
    // SAFETY: the mapping made above, no longer used by any VM.
    unsafe { libc::munmap(mem, size) };
    result
}
