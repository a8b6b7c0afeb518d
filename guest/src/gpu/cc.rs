//! Is the GPU in confidential-computing mode, and may this image use it?
//!
//! Production (`cocoon.gpu=required`) accepts only CC on, the production
//! environment and dev tools off: dev-tools mode lets the host debug the
//! GPU, and the simulated environment has no hardware root of trust.

use std::fmt;

use super::cmdline::GpuMode;
use super::nvml_types::{CC_DEVTOOLS_OFF, CC_ENVIRONMENT_PROD, CC_FEATURE_ENABLED, SystemState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcDecision {
    /// CC on: collect, verify and bind the GPUs' evidence.
    Attest,
    /// CC off, and the command line allows it: use the GPU unattested.
    Unattested,
}

/// Why a GPU is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcRefusal(pub String);

impl fmt::Display for CcRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn describe(s: &SystemState) -> String {
    let feature = match s.cc_feature {
        0 => "off".to_string(),
        CC_FEATURE_ENABLED => "on".into(),
        n => format!("unknown ({n})"),
    };
    let env = match s.environment {
        0 => "unavailable".to_string(),
        1 => "simulated".into(),
        CC_ENVIRONMENT_PROD => "production".into(),
        n => format!("unknown ({n})"),
    };
    let tools = match s.dev_tools_mode {
        CC_DEVTOOLS_OFF => "off".to_string(),
        1 => "on".into(),
        n => format!("unknown ({n})"),
    };
    format!("CC {feature}, environment {env}, dev tools {tools}")
}

pub fn decide(state: &SystemState, mode: GpuMode) -> Result<CcDecision, CcRefusal> {
    let production = state.cc_feature == CC_FEATURE_ENABLED
        && state.environment == CC_ENVIRONMENT_PROD
        && state.dev_tools_mode == CC_DEVTOOLS_OFF;
    if production {
        return Ok(CcDecision::Attest);
    }
    match mode {
        GpuMode::CcOffAllowed if state.cc_feature != CC_FEATURE_ENABLED => {
            Ok(CcDecision::Unattested)
        }
        // CC on but not production (dev tools, simulation) is never used:
        // its evidence would look like a CC GPU's.
        _ => Err(CcRefusal(format!(
            "the GPU is not in production confidential-computing mode ({}); \
             this image requires it (set the GPU to CC mode on the host, or boot a development image \
             whose command line has cocoon.gpu=cc-off-allowed)",
            describe(state)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(env: u32, feature: u32, tools: u32) -> SystemState {
        SystemState {
            environment: env,
            cc_feature: feature,
            dev_tools_mode: tools,
        }
    }

    #[test]
    fn production_cc_is_attested_in_both_modes() {
        for mode in [GpuMode::Required, GpuMode::CcOffAllowed] {
            assert_eq!(decide(&state(2, 1, 0), mode), Ok(CcDecision::Attest));
        }
    }

    #[test]
    fn cc_off_only_where_the_command_line_allows_it() {
        let off = state(0, 0, 0);
        let refusal = decide(&off, GpuMode::Required).unwrap_err();
        assert!(refusal.0.contains("CC off"), "{refusal}");
        assert_eq!(
            decide(&off, GpuMode::CcOffAllowed),
            Ok(CcDecision::Unattested)
        );
    }

    #[test]
    fn dev_tools_or_simulation_are_never_used() {
        for s in [state(2, 1, 1), state(1, 1, 0), state(2, 7, 0)] {
            assert!(decide(&s, GpuMode::Required).is_err(), "{s:?}");
            assert!(decide(&s, GpuMode::CcOffAllowed).is_err() || s.cc_feature != 1);
        }
        assert!(decide(&state(2, 1, 1), GpuMode::CcOffAllowed).is_err());
        assert!(decide(&state(1, 1, 0), GpuMode::CcOffAllowed).is_err());
    }

    #[test]
    fn the_state_an_h200_reported_outside_cc_mode() {
        // `cocoon-guest gpu-probe` on a lent H200 (driver 580.159.04, CC
        // off): guest/tests/data/gpu-probe-h200-cc-off.json.
        let probe: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/gpu-probe-h200-cc-off.json"))
                .unwrap();
        let n = |k: &str| probe["cc_state"][k].as_u64().unwrap() as u32;
        let s = state(n("environment"), n("cc_feature"), n("dev_tools_mode"));
        assert_eq!(describe(&s), probe["cc_state"]["text"]);
        assert!(decide(&s, GpuMode::Required).is_err());
        assert_eq!(
            decide(&s, GpuMode::CcOffAllowed),
            Ok(CcDecision::Unattested)
        );
    }
}
