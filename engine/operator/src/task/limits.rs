//! A task's limits: what its Function asks for (`spec.module.limits`), each checked against the
//! operator's cap (`kstash operator --task-max-*`). A request above its cap is refused with the
//! field and the cap named; an unset limit is the runtime's default, lowered to the cap.

use std::time::Duration;

use kstash_api::addons::TaskLimits;
use kstash_runtime::Limits;

/// Why a Function's limits cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A value does not parse.
    #[error("Function {function}: spec.module.limits.{field} {value:?}: {reason}")]
    Invalid {
        /// The Function.
        function: String,
        /// The field under `spec.module.limits`.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is above the operator's cap.
    #[error(
        "Function {function}: spec.module.limits.{field} {value} is above the operator's cap \
         {cap} (kstash operator --{flag}); ask the operator's administrator to raise it, or \
         lower the Function's limit"
    )]
    AboveCap {
        /// The Function.
        function: String,
        /// The field under `spec.module.limits`.
        field: &'static str,
        /// Its value.
        value: String,
        /// The cap, as the flag would write it.
        cap: String,
        /// The operator's flag setting the cap.
        flag: &'static str,
    },
}

/// Parses a Kubernetes quantity of bytes: a plain number, or one with a binary (`Ki` … `Ei`)
/// or decimal (`k`, `M`, `G`, `T`, `P`, `E`) suffix. Fractions and negative values are refused.
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    if num.is_empty() {
        return Err(
            "expected a whole number of bytes with an optional suffix (Ki, Mi, Gi, Ti, k, M, G, T)"
                .into(),
        );
    }
    let n: u64 = num.parse().map_err(|e| format!("{e}"))?;
    let mult: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        other => {
            return Err(format!(
                "unknown suffix {other:?} (use Ki, Mi, Gi, Ti, k, M, G, T)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| "must be above zero and below 16 EiB".to_string())
}

/// `n` bytes as a quantity (the largest binary suffix that divides it).
pub fn format_bytes(n: u64) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// `d` as a Go duration (`1h30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// The limits of a task of `function` (its `spec.module.limits`) under the operator's `caps`.
pub fn of_function(
    function: &kstash_api::addons::Function,
    caps: &Limits,
) -> Result<Limits, LimitsError> {
    let wanted = function
        .spec
        .module
        .as_ref()
        .and_then(|m| m.limits.as_ref());
    resolve(
        function.metadata.name.as_deref().unwrap_or(""),
        wanted,
        caps,
    )
}

/// The limits of a task of Function `function` asking for `wanted`, under the operator's `caps`
/// (the fields this module reads: memory, CPU time, wall clock, output and target bytes).
pub fn resolve(
    function: &str,
    wanted: Option<&TaskLimits>,
    caps: &Limits,
) -> Result<Limits, LimitsError> {
    let defaults = Limits::default();
    let mut limits = Limits {
        memory_bytes: defaults.memory_bytes.min(caps.memory_bytes),
        cpu_time: defaults.cpu_time.min(caps.cpu_time),
        wall_clock: defaults.wall_clock.min(caps.wall_clock),
        max_bytes_written: defaults.max_bytes_written.min(caps.max_bytes_written),
        max_target_bytes: defaults.max_target_bytes.min(caps.max_target_bytes),
        ..defaults
    };
    let Some(w) = wanted else {
        return Ok(limits);
    };
    let invalid = |field: &'static str, value: &str, reason: String| LimitsError::Invalid {
        function: function.to_string(),
        field,
        value: value.to_string(),
        reason,
    };
    let above =
        |field: &'static str, value: &str, cap: String, flag: &'static str| LimitsError::AboveCap {
            function: function.to_string(),
            field,
            value: value.to_string(),
            cap,
            flag,
        };
    let bytes = |field: &'static str, v: &Option<String>, cap: u64, flag: &'static str| {
        let Some(v) = v.as_deref() else {
            return Ok(None);
        };
        let n = parse_bytes(v).map_err(|r| invalid(field, v, r))?;
        if n > cap {
            return Err(above(field, v, format_bytes(cap), flag));
        }
        Ok(Some(n))
    };
    let duration = |field: &'static str, v: &Option<String>, cap: Duration, flag: &'static str| {
        let Some(v) = v.as_deref() else {
            return Ok(None);
        };
        let d = kstash_rules::backup_session::parse_go_duration(v)
            .map_err(|e| invalid(field, v, e.to_string()))?;
        if d.is_zero() {
            return Err(invalid(field, v, "must be above zero".into()));
        }
        if d > cap {
            return Err(above(field, v, format_duration(cap), flag));
        }
        Ok(Some(d))
    };
    if let Some(n) = bytes("memory", &w.memory, caps.memory_bytes, "task-max-memory")? {
        limits.memory_bytes = n;
    }
    if let Some(d) = duration("cpuTime", &w.cpu_time, caps.cpu_time, "task-max-cpu-time")? {
        limits.cpu_time = d;
    }
    if let Some(d) = duration(
        "wallClock",
        &w.wall_clock,
        caps.wall_clock,
        "task-max-wall-clock",
    )? {
        limits.wall_clock = d;
    }
    if let Some(n) = bytes(
        "outputBytes",
        &w.output_bytes,
        caps.max_bytes_written,
        "task-max-output-bytes",
    )? {
        limits.max_bytes_written = n;
    }
    if let Some(n) = bytes(
        "targetBytes",
        &w.target_bytes,
        caps.max_target_bytes,
        "task-max-target-bytes",
    )? {
        limits.max_target_bytes = n;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("2Ti"), Ok(2 << 40));
        assert_eq!(parse_bytes("100M"), Ok(100_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "Mi", "1.5Gi", "-1Gi", "1GB", "0", "99999999999Ei"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_bytes(512 << 20), "512Mi");
        assert_eq!(format_bytes(1 << 40), "1Ti");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
    }

    #[test]
    fn a_function_gets_what_it_asks_within_the_caps() {
        let caps = Limits {
            memory_bytes: 1 << 30,
            cpu_time: Duration::from_secs(3600),
            ..Limits::default()
        };
        // Nothing asked: the runtime's defaults (below these caps).
        assert_eq!(resolve("f", None, &caps).unwrap(), Limits::default());
        let wanted = TaskLimits {
            memory: Some("512Mi".into()),
            cpu_time: Some("45m".into()),
            wall_clock: Some("2h".into()),
            output_bytes: Some("10Gi".into()),
            target_bytes: Some("20Gi".into()),
        };
        let l = resolve("f", Some(&wanted), &caps).unwrap();
        assert_eq!(l.memory_bytes, 512 << 20);
        assert_eq!(l.cpu_time, Duration::from_secs(45 * 60));
        assert_eq!(l.wall_clock, Duration::from_secs(7200));
        assert_eq!(l.max_bytes_written, 10 << 30);
        assert_eq!(l.max_target_bytes, 20 << 30);
        // Caps below the defaults lower what a Function that asks nothing gets.
        let tight = Limits {
            memory_bytes: 64 << 20,
            ..Limits::default()
        };
        assert_eq!(resolve("f", None, &tight).unwrap().memory_bytes, 64 << 20);
    }

    #[test]
    fn above_the_cap_or_malformed_is_refused_naming_the_field() {
        let caps = Limits {
            memory_bytes: 1 << 30,
            ..Limits::default()
        };
        let ask = |f: fn(&mut TaskLimits)| {
            let mut w = TaskLimits::default();
            f(&mut w);
            resolve("es-backup", Some(&w), &caps)
                .unwrap_err()
                .to_string()
        };
        let e = ask(|w| w.memory = Some("4Gi".into()));
        assert!(
            e.contains("Function es-backup: spec.module.limits.memory 4Gi is above the operator's cap 1Gi (kstash operator --task-max-memory)"),
            "{e}"
        );
        let e = ask(|w| w.wall_clock = Some("7h".into()));
        assert!(
            e.contains("spec.module.limits.wallClock 7h") && e.contains("cap 6h"),
            "{e}"
        );
        let e = ask(|w| w.cpu_time = Some("soon".into()));
        assert!(e.contains("spec.module.limits.cpuTime \"soon\""), "{e}");
        let e = ask(|w| w.output_bytes = Some("1.5Gi".into()));
        assert!(
            e.contains("spec.module.limits.outputBytes \"1.5Gi\""),
            "{e}"
        );
        let e = ask(|w| w.wall_clock = Some("0s".into()));
        assert!(e.contains("must be above zero"), "{e}");
    }
}
