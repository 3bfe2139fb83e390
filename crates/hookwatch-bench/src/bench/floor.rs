//! `--floor`: hookwatch's ingest as a fraction of the floor's (`hookwatch-floor`, the
//! upstream's write path rebuilt), on the same machine in the same run. Rounds alternate the
//! floor, hookwatch at `full` (fsync per commit) and at `normal` (as the floor), each on a
//! fresh data dir, so machine noise falls on all three alike; the report gives every round
//! and the medians.

use super::{BenchArgs, MachineCpu, Server, closed_loop, process_cpu_seconds};

/// One configuration's closed-loop round: events/s and the server's CPU per event (µs).
#[derive(Debug, Clone, Copy)]
struct Round {
    events_per_s: f64,
    cpu_us: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub(super) async fn compare(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let configurations = ["floor", "full", "normal"];
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); configurations.len()];
    println!(
        "# hookwatch-bench --floor: {} rounds of {} events over {} connections",
        args.rounds, args.events, args.connections
    );
    for round in 0..args.rounds {
        for (i, name) in configurations.iter().enumerate() {
            let dir = data_dir.join(format!("{name}-{round}"));
            std::fs::create_dir_all(&dir)?;
            let server = match *name {
                "floor" => Server::start_floor(&dir).await?,
                durability => Server::start(&dir, durability, None).await?,
            };
            let cpu_before = (server.cpu_seconds(), process_cpu_seconds("self"));
            let machine_before = MachineCpu::now();
            let (latencies, elapsed) =
                closed_loop(&server.addr, args.events, args.connections, 1, 0).await?;
            let machine_after = MachineCpu::now();
            let cpu = (
                server.cpu_seconds() - cpu_before.0,
                process_cpu_seconds("self") - cpu_before.1,
            );
            let sent = latencies.0.len().max(1) as f64;
            let measured = Round {
                events_per_s: sent / elapsed.as_secs_f64(),
                cpu_us: cpu.0 * 1e6 / sent,
            };
            println!(
                "round {round} {name:<6} {:>8.0} events/s, server CPU per event {:>6.1} µs; {}",
                measured.events_per_s,
                measured.cpu_us,
                machine_before.report_since(machine_after, cpu.0, cpu.1)
            );
            rounds[i].push(measured);
            drop(server);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let rate = |i: usize| median(rounds[i].iter().map(|r| r.events_per_s).collect());
    let cpu = |i: usize| median(rounds[i].iter().map(|r| r.cpu_us).collect());
    println!("\n## medians");
    for (i, name) in configurations.iter().enumerate() {
        println!(
            "{name:<6} {:>8.0} events/s, server CPU per event {:>6.1} µs, ingest {:.2} × the floor's",
            rate(i),
            cpu(i),
            rate(i) / rate(0)
        );
    }
    Ok(())
}
