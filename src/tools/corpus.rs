//! A labelled corpus of simulated dialysis treatments, for judging the alarm system:
//! `nephrocare simulate --corpus DIR` writes it, `nephrocare bench alarms` replays it.
//!
//! Each treatment is a machine's readings, one per second, with **true episodes** that a
//! clinician must hear about — intradialytic hypotension, high venous pressure, a
//! dialysate conductivity fault, a disconnect or needle dislodgement (venous pressure
//! collapses), the machine reporting danger — and **nuisance artefacts** that need no
//! intervention: single-sample spikes, motion artefacts of a few seconds, a blood-pressure
//! cuff re-inflating, and brief link drops. The ground truth (every episode and artefact,
//! with when it starts and ends) is written next to the data (`truth.json`), and the
//! readings as one CSV per treatment (`treatments/NNNN.csv`: `t,sbp,hr,venous,arterial,
//! conductivity,status`, `t` in seconds from the treatment's start; a second missing from a
//! file is a link drop). Generation is deterministic for a seed.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One second of a treatment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: u32,
    pub sbp: f64,
    pub hr: f64,
    pub venous: f64,
    pub arterial: f64,
    pub conductivity: f64,
    pub status: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeKind {
    Hypotension,
    HighVenousPressure,
    ConductivityFault,
    NeedleDislodgement,
    MachineDanger,
}

impl EpisodeKind {
    const ALL: [EpisodeKind; 5] = [
        EpisodeKind::Hypotension,
        EpisodeKind::HighVenousPressure,
        EpisodeKind::ConductivityFault,
        EpisodeKind::NeedleDislodgement,
        EpisodeKind::MachineDanger,
    ];

    /// The alarm condition that must be raised for it, and others it explains.
    pub fn codes(self) -> (&'static str, &'static [&'static str]) {
        match self {
            EpisodeKind::Hypotension => ("systolic_bp_low", &[]),
            EpisodeKind::HighVenousPressure => ("venous_pressure_high", &["system_status_warning"]),
            EpisodeKind::ConductivityFault => ("dialysate_conductivity_high", &["system_status_warning"]),
            EpisodeKind::NeedleDislodgement => ("venous_pressure_low", &[]),
            EpisodeKind::MachineDanger => ("system_status_danger", &[]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// One implausible reading (blood pressure, venous pressure, conductivity or heart rate).
    Spike,
    /// A few seconds of pressure swings as the patient moves.
    Motion,
    /// The blood-pressure cuff re-inflating: a low reading for a short while.
    CuffReinflation,
    /// The machine's network link drops for a few seconds (no readings, a real disconnect).
    LinkDrop,
}

/// Something that happens during a treatment, from `start` to `end` (seconds, end excluded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event<K> {
    pub kind: K,
    pub start: u32,
    pub end: u32,
}

impl<K> Event<K> {
    pub fn covers(&self, t: u32) -> bool {
        (self.start..self.end).contains(&t)
    }
}

/// A treatment's ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Treatment {
    pub index: usize,
    pub seconds: u32,
    pub episodes: Vec<Event<EpisodeKind>>,
    pub artifacts: Vec<Event<ArtifactKind>>,
}

/// The corpus: its ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub seed: u64,
    pub treatments: Vec<Treatment>,
}

/// Small deterministic PRNG (xorshift): noise, not cryptography.
pub struct Noise(pub u64);

impl Noise {
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal, mean 0, sd 1.
    pub fn gauss(&mut self) -> f64 {
        (0..6).map(|_| self.uniform()).sum::<f64>() - 3.0
    }
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.uniform() * f64::from(hi - lo + 1)) as u32 % (hi - lo + 1)
    }
}

/// Plans a treatment: 3.5–4.5 h, one or two true episodes, eight to fourteen artefacts,
/// none overlapping (each in its own slot, with quiet between).
pub fn plan(index: usize, seed: u64) -> Treatment {
    let mut n = Noise(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let seconds = n.range(12_600, 16_200);
    // Slots of 10 minutes after the first 10 minutes, the last ending 10 minutes before the
    // end; each holds at most one event, placed at random inside it with 30 s of quiet after.
    const SLOT: u32 = 600;
    let mut slots: Vec<u32> = (0..(seconds - 2 * SLOT) / SLOT).map(|s| SLOT + s * SLOT).collect();
    let mut take = |n: &mut Noise, length: u32| {
        let i = (n.uniform() * slots.len() as f64) as usize % slots.len();
        slots.swap_remove(i) + n.range(0, SLOT - 30 - length)
    };
    let mut episodes = Vec::new();
    for _ in 0..n.range(1, 2) {
        let kind = EpisodeKind::ALL[(n.uniform() * 5.0) as usize % 5];
        let length = match kind {
            EpisodeKind::Hypotension => n.range(240, 540),
            EpisodeKind::HighVenousPressure => n.range(60, 240),
            EpisodeKind::ConductivityFault => n.range(120, 300),
            EpisodeKind::NeedleDislodgement => n.range(30, 120),
            EpisodeKind::MachineDanger => n.range(20, 90),
        };
        let start = take(&mut n, length);
        episodes.push(Event { kind, start, end: start + length });
    }
    let mut artifacts = Vec::new();
    for _ in 0..n.range(8, 14) {
        let (kind, length) = match (n.uniform() * 10.0) as u32 {
            0..=3 => (ArtifactKind::Spike, 1),
            4..=6 => (ArtifactKind::Motion, n.range(3, 6)),
            7..=8 => (ArtifactKind::CuffReinflation, n.range(8, 20)),
            _ => (ArtifactKind::LinkDrop, n.range(3, 10)),
        };
        let start = take(&mut n, length);
        artifacts.push(Event { kind, start, end: start + length });
    }
    episodes.sort_by_key(|e| e.start);
    artifacts.sort_by_key(|a| a.start);
    Treatment { index, seconds, episodes, artifacts }
}

/// The readings of a planned treatment, second by second (link drops leave gaps).
pub fn samples(plan: &Treatment, seed: u64) -> Vec<Sample> {
    let mut n = Noise(seed ^ (plan.index as u64 + 7).wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let (base_hr, base_sbp) = (72.0 + n.gauss() * 5.0, 138.0 + n.gauss() * 8.0);
    let mut out = Vec::with_capacity(plan.seconds as usize);
    for t in 0..plan.seconds {
        let progress = f64::from(t) / f64::from(plan.seconds);
        let mut s = Sample {
            t,
            sbp: base_sbp - 15.0 * progress + n.gauss() * 3.0,
            hr: base_hr + 4.0 * progress + n.gauss() * 2.0,
            venous: 160.0 + n.gauss() * 10.0,
            arterial: -150.0 + n.gauss() * 8.0,
            conductivity: 13.8 + n.gauss() * 0.04,
            status: "normal",
        };
        if plan.artifacts.iter().any(|a| a.kind == ArtifactKind::LinkDrop && a.covers(t)) {
            continue;
        }
        for e in plan.episodes.iter().filter(|e| e.covers(t)) {
            match e.kind {
                EpisodeKind::Hypotension => {
                    // The last 40 s the pressure recovers, wavering around the limit.
                    if e.end - t <= 40 {
                        s.sbp = 91.0 + n.gauss() * 2.5;
                    } else {
                        s.sbp = (82.0 + n.gauss() * 2.0).min(88.0);
                        s.hr += 18.0;
                    }
                }
                EpisodeKind::HighVenousPressure => {
                    s.venous = (440.0 + n.gauss() * 10.0).max(410.0);
                    if e.end - t <= 20 {
                        s.venous = 395.0 + n.gauss() * 8.0;
                    }
                    s.status = "warning";
                }
                EpisodeKind::ConductivityFault => {
                    s.conductivity = (16.6 + n.gauss() * 0.1).max(16.2);
                    s.status = "warning";
                }
                EpisodeKind::NeedleDislodgement => {
                    s.venous = (20.0 + n.gauss() * 6.0).clamp(-20.0, 40.0);
                    s.arterial = -150.0 + n.gauss() * 20.0;
                }
                EpisodeKind::MachineDanger => s.status = "danger",
            }
        }
        for a in plan.artifacts.iter().filter(|a| a.covers(t)) {
            match a.kind {
                ArtifactKind::Spike => match a.start % 4 {
                    0 => s.sbp = 70.0,
                    1 => s.venous = 480.0,
                    2 => s.conductivity = 17.2,
                    _ => s.hr = 150.0,
                },
                ArtifactKind::Motion => {
                    let swing = if (t - a.start) % 2 == 0 { 1.0 } else { -1.0 };
                    s.venous = 300.0 + swing * 150.0 + n.gauss() * 20.0;
                    s.arterial = -200.0 - 80.0 * swing.abs() + n.gauss() * 20.0;
                    s.hr += 25.0;
                }
                ArtifactKind::CuffReinflation => s.sbp = 68.0 + n.gauss() * 3.0,
                ArtifactKind::LinkDrop => {}
            }
        }
        s.sbp = s.sbp.clamp(45.0, 250.0).round();
        s.hr = (s.hr * 10.0).round() / 10.0;
        s.venous = s.venous.clamp(-90.0, 590.0).round();
        s.arterial = s.arterial.clamp(-490.0, 290.0).round();
        s.conductivity = (s.conductivity * 100.0).round() / 100.0;
        out.push(s);
    }
    out
}

/// Writes a corpus of `treatments` treatments into `dir` (truth.json, treatments/*.csv).
pub fn write(dir: &Path, treatments: usize, seed: u64) -> std::io::Result<Truth> {
    std::fs::create_dir_all(dir.join("treatments"))?;
    let truth = Truth { seed, treatments: (0..treatments).map(|i| plan(i, seed)).collect() };
    for t in &truth.treatments {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("treatments/{:04}.csv", t.index)))?);
        writeln!(f, "t,sbp,hr,venous,arterial,conductivity,status")?;
        for s in samples(t, seed) {
            writeln!(f, "{},{},{},{},{},{},{}", s.t, s.sbp, s.hr, s.venous, s.arterial, s.conductivity, s.status)?;
        }
    }
    std::fs::write(dir.join("truth.json"), serde_json::to_vec_pretty(&truth).map_err(std::io::Error::other)?)?;
    Ok(truth)
}

/// Reads a treatment's readings back.
pub fn read_samples(dir: &Path, index: usize) -> std::io::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(dir.join(format!("treatments/{index:04}.csv")))?;
    let bad = |line: &str| std::io::Error::other(format!("bad corpus line: {line}"));
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| bad(line));
            Ok(Sample {
                t: f[0].parse().map_err(|_| bad(line))?,
                sbp: num(1)?,
                hr: num(2)?,
                venous: num(3)?,
                arterial: num(4)?,
                conductivity: num(5)?,
                status: match f.get(6) {
                    Some(&"warning") => "warning",
                    Some(&"danger") => "danger",
                    _ => "normal",
                },
            })
        })
        .collect()
}

/// A limit as the naive alarm counter and the scorer see it.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub code_low: &'static str,
    pub code_high: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub delay_seconds: i32,
}

/// What the corpus carries, by metric: (column, value).
pub fn values(s: &Sample) -> [(&'static str, f64); 5] {
    [
        ("systolic_bp", s.sbp),
        ("heart_rate", s.hr),
        ("venous_pressure", s.venous),
        ("arterial_pressure", s.arterial),
        ("dialysate_conductivity", s.conductivity),
    ]
}

/// Alarms a plain threshold check would raise on a treatment: every reading that crosses
/// into a limit (no delay, no hysteresis, no suppression), every change of the machine's
/// status to warning or danger, and every link drop (an offline alarm).
pub fn naive_alarms(plan: &Treatment, samples: &[Sample], limits: &[(&str, Limit)]) -> usize {
    let mut breached: std::collections::HashMap<&str, bool> = Default::default();
    let mut status = "normal";
    let mut count = 0;
    for s in samples {
        for (column, v) in values(s) {
            let Some((_, l)) = limits.iter().find(|(c, _)| *c == column) else { continue };
            for (code, breach) in
                [(l.code_low, l.low.is_some_and(|x| v < x)), (l.code_high, l.high.is_some_and(|x| v > x))]
            {
                let was = breached.insert(code, breach).unwrap_or(false);
                if breach && !was {
                    count += 1;
                }
            }
        }
        if s.status != status && s.status != "normal" {
            count += 1;
        }
        status = s.status;
    }
    count + plan.artifacts.iter().filter(|a| a.kind == ArtifactKind::LinkDrop).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corpus_is_deterministic_and_its_events_do_not_overlap() {
        for i in 0..50 {
            let (a, b) = (plan(i, 42), plan(i, 42));
            assert_eq!(a, b);
            let mut spans: Vec<(u32, u32)> = a
                .episodes
                .iter()
                .map(|e| (e.start, e.end))
                .chain(a.artifacts.iter().map(|e| (e.start, e.end)))
                .collect();
            spans.sort();
            assert!(spans.windows(2).all(|w| w[0].1 < w[1].0), "{spans:?}");
            assert!(spans.last().unwrap().1 < a.seconds);
            assert!(!a.episodes.is_empty());
            assert_eq!(samples(&a, 42), samples(&b, 42));
        }
    }

    #[test]
    fn true_episodes_stay_beyond_their_limit_and_normal_readings_inside_every_limit() {
        for i in 0..40 {
            let p = plan(i, 7);
            let s = samples(&p, 7);
            let at = |t: u32| s.iter().find(|x| x.t == t);
            for e in &p.episodes {
                let core_end = if e.kind == EpisodeKind::Hypotension { e.end - 40 } else { e.end };
                for t in e.start..core_end.min(e.start + 20) {
                    let x = at(t).expect("episodes are not in link drops");
                    let beyond = match e.kind {
                        EpisodeKind::Hypotension => x.sbp < 90.0,
                        EpisodeKind::HighVenousPressure => x.venous > 400.0,
                        EpisodeKind::ConductivityFault => x.conductivity > 16.0,
                        EpisodeKind::NeedleDislodgement => x.venous < 50.0,
                        EpisodeKind::MachineDanger => x.status == "danger",
                    };
                    assert!(beyond, "{e:?} at {t}: {x:?}");
                }
            }
            let quiet = |t: u32| {
                !p.episodes.iter().any(|e| (e.start..e.end).contains(&t))
                    && !p.artifacts.iter().any(|a| (a.start..a.end).contains(&t))
            };
            for x in s.iter().filter(|x| quiet(x.t)) {
                assert!(x.sbp > 90.0 && x.venous > 50.0 && x.venous < 400.0 && x.conductivity < 16.0, "{x:?}");
                assert!(x.hr > 50.0 && x.hr < 120.0 && x.arterial > -250.0 && x.status == "normal", "{x:?}");
            }
            let drops: u32 =
                p.artifacts.iter().filter(|a| a.kind == ArtifactKind::LinkDrop).map(|a| a.end - a.start).sum();
            assert_eq!(s.len() as u32, p.seconds - drops, "a link drop leaves a gap");
        }
    }
}
