//! Lowering the priority rsync runs at, as a client's `nice`/`ionice`
//! prefix asked (`--rsync-path='nice -n 19 ionice -c3 rsync'`). The gate
//! lowers its own priority just before it starts rsync, which inherits it;
//! the gate itself only waits from then on. Nothing here ever raises a
//! priority: a `nice` increment only adds, and an I/O class is applied only
//! where it is not above the one rsync would have had anyway.

use crate::request::priority::{IoPriority, NICE_MAX, Priority};

/// Best-effort levels the kernel derives from a nice value when a thread
/// has no I/O class of its own (`(nice + 20) / 5`).
fn level_from_nice(nice: i32) -> i32 {
    ((nice + 20) / 5).clamp(0, 7)
}

/// How low an I/O priority is: realtime below 0, best-effort levels 0 to
/// 7, idle 8. Class 0 ("none") is best-effort at the nice value's level.
fn io_rank(class: u8, level: u8, nice: i32) -> i32 {
    match class {
        1 => -1,
        2 => i32::from(level.min(7)),
        3 => 8,
        _ => level_from_nice(nice),
    }
}

fn rank_of(io: IoPriority) -> i32 {
    match io {
        IoPriority::BestEffort(l) => i32::from(l),
        IoPriority::Idle => 8,
    }
}

fn class_and_level(io: IoPriority) -> (u8, u8) {
    match io {
        IoPriority::BestEffort(l) => (2, l),
        IoPriority::Idle => (3, 0),
    }
}

fn shown(class: u8, level: u8, nice: i32) -> String {
    match class {
        1 => format!("realtime/{level}"),
        2 => format!("best-effort/{level}"),
        3 => "idle".into(),
        _ => format!(
            "best-effort/{} (from the nice value)",
            level_from_nice(nice)
        ),
    }
}

/// The nice value after adding `inc` to `current` (never above 19, never
/// below where it was).
pub fn lowered_nice(current: i32, inc: u8) -> i32 {
    current.max(current.saturating_add(i32::from(inc)).min(NICE_MAX))
}

/// Apply `p` to this thread (the one that starts rsync). Returns what was
/// applied, for the audit record, or None when the request asked for
/// nothing.
pub fn apply(p: &Priority) -> Result<Option<String>, String> {
    if p.is_none() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut nice = crate::sys::nice_value().map_err(|e| format!("getpriority: {e}"))?;
    if let Some(inc) = p.nice {
        let new = lowered_nice(nice, inc);
        if new != nice {
            crate::sys::set_nice_value(new).map_err(|e| format!("setpriority: {e}"))?;
            nice = new;
        }
        parts.push(format!("nice {nice}"));
    }
    if let Some(io) = p.io {
        let (class, level) = crate::sys::io_priority().map_err(|e| format!("ioprio_get: {e}"))?;
        if rank_of(io) >= io_rank(class, level, nice) {
            let (c, l) = class_and_level(io);
            crate::sys::set_io_priority(c, l).map_err(|e| format!("ioprio_set: {e}"))?;
            parts.push(format!("ionice {io}"));
        } else {
            parts.push(format!(
                "ionice {io} not applied (it would raise the I/O priority): {}",
                shown(class, level, nice)
            ));
        }
    }
    Ok(Some(parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_priorities_as_notes_show_them() {
        assert_eq!(shown(1, 4, 0), "realtime/4");
        assert_eq!(shown(2, 7, 0), "best-effort/7");
        assert_eq!(shown(3, 0, 0), "idle");
        assert_eq!(shown(0, 0, 10), "best-effort/6 (from the nice value)");
        assert_eq!(shown(0, 0, -20), "best-effort/0 (from the nice value)");
    }

    #[test]
    fn nice_only_goes_down() {
        assert_eq!(lowered_nice(0, 19), 19);
        assert_eq!(lowered_nice(0, 10), 10);
        assert_eq!(lowered_nice(5, 19), 19);
        assert_eq!(lowered_nice(19, 5), 19);
        assert_eq!(lowered_nice(-5, 3), -2);
        assert_eq!(lowered_nice(0, 0), 0);
    }

    #[test]
    fn io_ranks() {
        // No class: the level follows the nice value.
        assert_eq!(io_rank(0, 0, 0), 4);
        assert_eq!(io_rank(0, 0, 19), 7);
        assert_eq!(io_rank(0, 0, -20), 0);
        assert_eq!(io_rank(1, 0, 0), -1);
        assert_eq!(io_rank(2, 5, 0), 5);
        assert_eq!(io_rank(3, 0, 0), 8);
        // What may be applied over what.
        let applies = |req: IoPriority, class: u8, level: u8, nice: i32| {
            rank_of(req) >= io_rank(class, level, nice)
        };
        assert!(applies(IoPriority::Idle, 0, 0, 0));
        assert!(applies(IoPriority::BestEffort(7), 0, 0, 0));
        assert!(applies(IoPriority::BestEffort(4), 0, 0, 0));
        assert!(!applies(IoPriority::BestEffort(3), 0, 0, 0));
        assert!(!applies(IoPriority::BestEffort(4), 0, 0, 19));
        assert!(!applies(IoPriority::BestEffort(7), 3, 0, 0));
        assert!(applies(IoPriority::Idle, 3, 0, 0));
    }

    /// Applied to the calling thread (each test has its own), and
    /// inherited by what it starts.
    #[test]
    fn applied_priority_is_inherited() {
        let before = crate::sys::nice_value().unwrap();
        let p = Priority {
            nice: Some(3),
            io: Some(IoPriority::Idle),
        };
        let applied = apply(&p).unwrap().unwrap();
        let nice = lowered_nice(before, 3);
        assert_eq!(applied, format!("nice {nice}, ionice idle"));
        assert_eq!(crate::sys::nice_value().unwrap(), nice);
        assert_eq!(crate::sys::io_priority().unwrap().0, 3);
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", "cut -d' ' -f19 /proc/$$/stat"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            nice.to_string()
        );
        // Asking for more than idle now changes nothing and says so.
        let again = apply(&Priority {
            nice: None,
            io: Some(IoPriority::BestEffort(7)),
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            again,
            "ionice best-effort/7 not applied (it would raise the I/O priority): idle"
        );
        assert_eq!(crate::sys::io_priority().unwrap().0, 3);
        assert_eq!(apply(&Priority::default()).unwrap(), None);
    }
}
