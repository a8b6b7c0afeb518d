//! NVML, opened at run time with `dlopen("libnvidia-ml.so.1")`: the guest
//! has no link-time dependency on NVIDIA's libraries, so the CPU profile
//! runs without them and a GPU image says plainly when they are missing.
//!
//! Only the calls the confidential-computing path needs are bound. Each
//! returns NVML's error string on failure.

use std::ffi::{CStr, c_char, c_void};
use std::os::raw::c_uint;

use anyhow::{Result, bail};

use super::nvml_types::{
    AttestationReport, CC_NONCE_SIZE, GpuCertificate, NVML_SUCCESS, NvmlDevice, NvmlReturn,
    SystemSettings, SystemState,
};

pub const LIBRARY: &CStr = c"libnvidia-ml.so.1";

type Init = unsafe extern "C" fn() -> NvmlReturn;
type ErrorString = unsafe extern "C" fn(NvmlReturn) -> *const c_char;
type GetCount = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type GetHandle = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn;
type GetString = unsafe extern "C" fn(*mut c_char, c_uint) -> NvmlReturn;
type DeviceString = unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> NvmlReturn;
type GetState = unsafe extern "C" fn(*mut SystemState) -> NvmlReturn;
type GetSettings = unsafe extern "C" fn(*mut SystemSettings) -> NvmlReturn;
type GetReady = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type SetReady = unsafe extern "C" fn(c_uint) -> NvmlReturn;
type GetReport = unsafe extern "C" fn(NvmlDevice, *mut AttestationReport) -> NvmlReturn;
type GetCert = unsafe extern "C" fn(NvmlDevice, *mut GpuCertificate) -> NvmlReturn;

/// An initialised NVML; shut down on drop.
pub struct Nvml {
    handle: *mut c_void,
    error_string: ErrorString,
    shutdown: Init,
    get_count: GetCount,
    get_handle: GetHandle,
    driver_version: GetString,
    device_name: DeviceString,
    device_uuid: DeviceString,
    cc_state: GetState,
    /// R550.54+; older libraries lack it.
    cc_settings: Option<GetSettings>,
    get_ready: GetReady,
    set_ready: SetReady,
    report: GetReport,
    certificate: GetCert,
}

// SAFETY: NVML is thread-safe (nvml.h); the library handle is never freed
// while `Nvml` lives.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

/// A GPU handle, valid while its `Nvml` lives.
#[derive(Clone, Copy)]
pub struct Device(NvmlDevice);

impl Nvml {
    /// dlopen + nvmlInit_v2.
    pub fn open() -> Result<Self> {
        // SAFETY: a NUL-terminated name; RTLD_NOW resolves everything now,
        // so a broken library fails here and not in the middle of a call.
        let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            bail!("cannot load {}: {}", LIBRARY.to_string_lossy(), dlerror());
        }
        let sym = |name: &CStr| -> Result<*mut c_void> {
            // SAFETY: `handle` is a live dlopen handle; `name` NUL-terminated.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if p.is_null() {
                bail!(
                    "{} has no {}",
                    LIBRARY.to_string_lossy(),
                    name.to_string_lossy()
                );
            }
            Ok(p)
        };
        // SAFETY (every transmute below): each symbol is the C function
        // nvml.h declares with exactly the signature of its type alias.
        let nvml = unsafe {
            let init = std::mem::transmute::<*mut c_void, Init>(sym(c"nvmlInit_v2")?);
            let nvml = Nvml {
                handle,
                error_string: std::mem::transmute::<*mut c_void, ErrorString>(sym(
                    c"nvmlErrorString",
                )?),
                shutdown: std::mem::transmute::<*mut c_void, Init>(sym(c"nvmlShutdown")?),
                get_count: std::mem::transmute::<*mut c_void, GetCount>(sym(
                    c"nvmlDeviceGetCount_v2",
                )?),
                get_handle: std::mem::transmute::<*mut c_void, GetHandle>(sym(
                    c"nvmlDeviceGetHandleByIndex_v2",
                )?),
                driver_version: std::mem::transmute::<*mut c_void, GetString>(sym(
                    c"nvmlSystemGetDriverVersion",
                )?),
                device_name: std::mem::transmute::<*mut c_void, DeviceString>(sym(
                    c"nvmlDeviceGetName",
                )?),
                device_uuid: std::mem::transmute::<*mut c_void, DeviceString>(sym(
                    c"nvmlDeviceGetUUID",
                )?),
                cc_state: std::mem::transmute::<*mut c_void, GetState>(sym(
                    c"nvmlSystemGetConfComputeState",
                )?),
                cc_settings: sym(c"nvmlSystemGetConfComputeSettings")
                    .ok()
                    .map(|p| std::mem::transmute::<*mut c_void, GetSettings>(p)),
                get_ready: std::mem::transmute::<*mut c_void, GetReady>(sym(
                    c"nvmlSystemGetConfComputeGpusReadyState",
                )?),
                set_ready: std::mem::transmute::<*mut c_void, SetReady>(sym(
                    c"nvmlSystemSetConfComputeGpusReadyState",
                )?),
                report: std::mem::transmute::<*mut c_void, GetReport>(sym(
                    c"nvmlDeviceGetConfComputeGpuAttestationReport",
                )?),
                certificate: std::mem::transmute::<*mut c_void, GetCert>(sym(
                    c"nvmlDeviceGetConfComputeGpuCertificate",
                )?),
            };
            let r = init();
            if r != NVML_SUCCESS {
                let e = nvml.describe(r);
                // Not initialised: close the library without nvmlShutdown.
                libc::dlclose(handle);
                std::mem::forget(nvml);
                bail!("nvmlInit failed: {e}");
            }
            nvml
        };
        Ok(nvml)
    }

    fn describe(&self, r: NvmlReturn) -> String {
        // SAFETY: nvmlErrorString returns a static NUL-terminated string.
        let s = unsafe { (self.error_string)(r) };
        let text = if s.is_null() {
            "unknown error".into()
        } else {
            // SAFETY: non-null and NUL-terminated, see above.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        };
        format!("{text} (NVML error {r})")
    }

    fn check(&self, what: &str, r: NvmlReturn) -> Result<()> {
        if r == NVML_SUCCESS {
            Ok(())
        } else {
            bail!("{what}: {}", self.describe(r))
        }
    }

    pub fn device_count(&self) -> Result<u32> {
        let mut n = 0;
        // SAFETY: a valid out pointer.
        self.check("nvmlDeviceGetCount", unsafe { (self.get_count)(&mut n) })?;
        Ok(n)
    }

    pub fn device(&self, index: u32) -> Result<Device> {
        let mut d: NvmlDevice = std::ptr::null_mut();
        // SAFETY: a valid out pointer.
        let r = unsafe { (self.get_handle)(index, &mut d) };
        self.check(&format!("nvmlDeviceGetHandleByIndex({index})"), r)?;
        Ok(Device(d))
    }

    pub fn driver_version(&self) -> Result<String> {
        let mut buf = [0 as c_char; 96];
        // SAFETY: the buffer and its length agree.
        let r = unsafe { (self.driver_version)(buf.as_mut_ptr(), buf.len() as c_uint) };
        self.check("nvmlSystemGetDriverVersion", r)?;
        Ok(c_string(&buf))
    }

    pub fn name(&self, d: Device) -> Result<String> {
        let mut buf = [0 as c_char; 96];
        // SAFETY: the buffer and its length agree; `d` came from NVML.
        let r = unsafe { (self.device_name)(d.0, buf.as_mut_ptr(), buf.len() as c_uint) };
        self.check("nvmlDeviceGetName", r)?;
        Ok(c_string(&buf))
    }

    pub fn uuid(&self, d: Device) -> Result<String> {
        let mut buf = [0 as c_char; 96];
        // SAFETY: as for `name`.
        let r = unsafe { (self.device_uuid)(d.0, buf.as_mut_ptr(), buf.len() as c_uint) };
        self.check("nvmlDeviceGetUUID", r)?;
        Ok(c_string(&buf))
    }

    pub fn cc_state(&self) -> Result<SystemState> {
        let mut s = SystemState::default();
        // SAFETY: a valid out pointer of the struct nvml.h names.
        let r = unsafe { (self.cc_state)(&mut s) };
        self.check("nvmlSystemGetConfComputeState", r)?;
        Ok(s)
    }

    /// `None` when the library predates the call.
    pub fn cc_settings(&self) -> Result<Option<SystemSettings>> {
        let Some(f) = self.cc_settings else {
            return Ok(None);
        };
        let mut s = SystemSettings {
            version: SystemSettings::VERSION_1,
            ..Default::default()
        };
        // SAFETY: a valid out pointer, its version field set as NVML asks.
        let r = unsafe { f(&mut s) };
        self.check("nvmlSystemGetConfComputeSettings", r)?;
        Ok(Some(s))
    }

    pub fn ready_state(&self) -> Result<u32> {
        let mut v = 0;
        // SAFETY: a valid out pointer.
        let r = unsafe { (self.get_ready)(&mut v) };
        self.check("nvmlSystemGetConfComputeGpusReadyState", r)?;
        Ok(v)
    }

    pub fn set_ready_state(&self, accepting: u32) -> Result<()> {
        // SAFETY: takes a plain integer.
        let r = unsafe { (self.set_ready)(accepting) };
        self.check("nvmlSystemSetConfComputeGpusReadyState", r)
    }

    /// The GPU's SPDM report for `nonce` (request ‖ response bytes).
    pub fn attestation_report(&self, d: Device, nonce: [u8; CC_NONCE_SIZE]) -> Result<Vec<u8>> {
        let mut req = AttestationReport::request(nonce);
        // SAFETY: a valid, fully initialised struct of nvml.h's layout.
        let r = unsafe { (self.report)(d.0, &mut *req) };
        self.check("nvmlDeviceGetConfComputeGpuAttestationReport", r)?;
        Ok(req.report()?.to_vec())
    }

    /// The GPU's attestation certificate chain (PEM, leaf first).
    pub fn attestation_chain(&self, d: Device) -> Result<Vec<u8>> {
        let mut c = GpuCertificate::zeroed();
        // SAFETY: a valid, fully initialised struct of nvml.h's layout.
        let r = unsafe { (self.certificate)(d.0, &mut *c) };
        self.check("nvmlDeviceGetConfComputeGpuCertificate", r)?;
        Ok(c.attestation_chain()?.to_vec())
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: initialised in `open`; the handle is still open.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.handle);
        }
    }
}

fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(super) fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null and NUL-terminated.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}
