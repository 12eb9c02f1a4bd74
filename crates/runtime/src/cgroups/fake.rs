//! A recording fake [`CgroupManager`] for tests of the code that drives
//! cgroups (create, exec, update, pause, delete), with no cgroupfs at all.

use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;

use super::{CgroupError, CgroupManager, Stats};

/// Chooses the calls that fail.
pub type FailPredicate = fn(&FakeCall) -> bool;

/// One call made to [`FakeCgroups`], in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeCall {
    /// `create()`.
    Create,
    /// `apply(resources)`.
    Apply(Box<LinuxResources>),
    /// `add_process(pid)`.
    AddProcess(i32),
    /// `processes()`.
    Processes,
    /// `freeze()`.
    Freeze,
    /// `thaw()`.
    Thaw,
    /// `is_frozen()`.
    IsFrozen,
    /// `stats()`.
    Stats,
    /// `destroy()`.
    Destroy,
}

/// Records every call; `processes` reflects `add_process`, `is_frozen`
/// reflects `freeze`/`thaw`. [`FakeCgroups::fail_on`] makes one kind of
/// call fail.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    calls: Mutex<Vec<FakeCall>>,
    pids: Mutex<Vec<i32>>,
    frozen: Mutex<bool>,
    fail: Mutex<Option<FailPredicate>>,
}

impl FakeCgroups {
    /// A fake with no calls recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call for which `pred` is true fail (with an
    /// [`CgroupError::Unsupported`] naming the call).
    pub fn fail_on(&self, pred: fn(&FakeCall) -> bool) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(pred);
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, call: FakeCall) -> Result<(), CgroupError> {
        let fail = *self.fail.lock().unwrap_or_else(|e| e.into_inner());
        let failed = fail.is_some_and(|p| p(&call));
        let name = format!("{call:?}");
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        if failed {
            return Err(CgroupError::unsupported(name, "injected failure"));
        }
        Ok(())
    }
}

impl CgroupManager for FakeCgroups {
    type Error = CgroupError;
    fn create(&self) -> Result<(), CgroupError> {
        self.record(FakeCall::Create)
    }
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.record(FakeCall::Apply(Box::new(resources.clone())))
    }
    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.record(FakeCall::AddProcess(pid))?;
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.push(pid);
        pids.sort_unstable();
        pids.dedup();
        Ok(())
    }
    fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        self.record(FakeCall::Processes)?;
        Ok(self.pids.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        self.record(FakeCall::Freeze)?;
        *self.frozen.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(())
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        self.record(FakeCall::Thaw)?;
        *self.frozen.lock().unwrap_or_else(|e| e.into_inner()) = false;
        Ok(())
    }
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.record(FakeCall::IsFrozen)?;
        Ok(*self.frozen.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        self.record(FakeCall::Stats)?;
        Ok(Stats::default())
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        self.record(FakeCall::Destroy)?;
        self.pids.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_fails_on_demand() -> Result<(), CgroupError> {
        let fake = FakeCgroups::new();
        fake.create()?;
        fake.add_process(42)?;
        fake.freeze()?;
        assert!(fake.is_frozen()?);
        assert_eq!(fake.processes()?, vec![42]);
        fake.fail_on(|c| matches!(c, FakeCall::Destroy));
        let err = fake.destroy().err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("Destroy: injected failure"));
        assert_eq!(
            fake.calls(),
            vec![
                FakeCall::Create,
                FakeCall::AddProcess(42),
                FakeCall::Freeze,
                FakeCall::IsFrozen,
                FakeCall::Processes,
                FakeCall::Destroy,
            ]
        );
        Ok(())
    }
}
