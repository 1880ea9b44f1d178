//! `simulate --commands`: episodes on demand, one command a line on standard input.

use std::sync::{Arc, Mutex};

use super::physiology::Episode;

/// Episodes asked for on standard input: machine serial → (episode, treatment minutes).
pub(crate) type Forced = Arc<Mutex<std::collections::HashMap<String, (Episode, f64)>>>;

/// Parses `episode SERIAL KIND [MINUTES]`.
fn parse_command(line: &str) -> Result<(String, Episode, f64), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [verb, serial, kind, rest @ ..] = words.as_slice() else {
        return Err("expected: episode SERIAL hypotension|high-venous|conductivity|disconnect [MINUTES]".into());
    };
    if *verb != "episode" || rest.len() > 1 {
        return Err(format!("unknown command '{line}'"));
    }
    let episode = match *kind {
        "hypotension" => Episode::Hypotension,
        "high-venous" => Episode::HighVenous,
        "conductivity" => Episode::ConductivityFault,
        "disconnect" => Episode::Disconnect,
        other => return Err(format!("unknown episode '{other}'")),
    };
    let minutes = match rest.first() {
        Some(m) => m.parse::<f64>().ok().filter(|m| *m > 0.0 && *m <= 600.0).ok_or(format!("bad minutes '{m}'"))?,
        None => 8.0,
    };
    Ok(((*serial).to_owned(), episode, minutes))
}

/// Reads commands from standard input until it closes (a thread: stdin blocks).
pub(crate) fn read_commands(forced: Forced) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match parse_command(&line) {
                Ok((serial, episode, minutes)) => {
                    println!("simulate: {episode:?} on {serial} for {minutes} min of treatment");
                    forced.lock().expect("forced").insert(serial, (episode, minutes));
                }
                Err(e) => eprintln!("simulate: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_machine_an_episode_and_its_length() {
        assert_eq!(parse_command("episode DM-002 hypotension"), Ok(("DM-002".into(), Episode::Hypotension, 8.0)));
        assert_eq!(
            parse_command(" episode SIM-0001 conductivity 2.5 "),
            Ok(("SIM-0001".into(), Episode::ConductivityFault, 2.5))
        );
        assert_eq!(parse_command("episode DM-001 disconnect 1").map(|c| c.1), Ok(Episode::Disconnect));
        for bad in [
            "episode DM-001",
            "episode DM-001 flood",
            "episode DM-001 hypotension -1",
            "stop DM-001 hypotension",
            "episode DM-001 hypotension 1 2",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
