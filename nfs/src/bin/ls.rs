//! `scanjob-nfs-ls SERVER EXPORT [options]`: lists an export recursively with the NFS source's
//! walker and prints what it found and what it cost the server: entries per second, calls per
//! entry, and calls and latency percentiles per procedure. The benchmark's client. The clock
//! starts after the mount, so the figures are the walk's.
//!
//! Options: `--uid N --gid N` (AUTH_SYS identity, default 65534), `--connections N` (default 4),
//! `--in-flight N` (directories listed at once, default 32), `--portmap-port P` (default 111),
//! `--maxcount BYTES` (READDIRPLUS reply size), `--ping N` (N NULL calls one at a time before
//! the walk: the round trip as this client sees it, reported as `round_trip_p50`), `--print`
//! (the paths, NUL-terminated, on stdout; the report then goes to stderr).

use std::io::Write;
use std::net::IpAddr;
use std::time::Instant;

use scanjob_nfs::{ClientBuilder, Credential, Item, Procedure, Walker};

struct Args {
    server: IpAddr,
    export: String,
    uid: u32,
    gid: u32,
    connections: usize,
    in_flight: usize,
    portmap_port: u16,
    maxcount: u32,
    ping: u32,
    print: bool,
}

fn parse() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut args = Args {
        server: IpAddr::from([0, 0, 0, 0]),
        export: String::new(),
        uid: 65534,
        gid: 65534,
        connections: 4,
        in_flight: 32,
        portmap_port: 111,
        maxcount: scanjob_nfs::DEFAULT_MAXCOUNT,
        ping: 0,
        print: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{name} {v:?}: {e}")))
        };
        match arg.as_str() {
            "--uid" => args.uid = value("--uid")? as u32,
            "--gid" => args.gid = value("--gid")? as u32,
            "--connections" => args.connections = value("--connections")? as usize,
            "--in-flight" => args.in_flight = value("--in-flight")? as usize,
            "--portmap-port" => args.portmap_port = value("--portmap-port")? as u16,
            "--maxcount" => args.maxcount = value("--maxcount")? as u32,
            "--ping" => args.ping = value("--ping")? as u32,
            "--print" => args.print = true,
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => positional.push(arg),
        }
    }
    let [server, export] = <[String; 2]>::try_from(positional)
        .map_err(|_| "usage: scanjob-nfs-ls SERVER EXPORT [options]".to_string())?;
    args.server = server
        .parse()
        .map_err(|e| format!("SERVER {server:?}: {e}"))?;
    args.export = export;
    Ok(args)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scanjob-nfs-ls: {e}");
            std::process::exit(2);
        }
    };
    let client = match ClientBuilder::new(args.server, args.export.as_bytes())
        .credential(Credential::new(args.uid, args.gid, Vec::new()))
        .connections(args.connections)
        .portmap_port(args.portmap_port)
        .readdir_sizes(args.maxcount, args.maxcount / 4)
        .connect()
        .await
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("scanjob-nfs-ls: {e}");
            std::process::exit(1);
        }
    };
    for _ in 0..args.ping {
        if let Err(e) = client.null().await {
            eprintln!("scanjob-nfs-ls: NULL: {e}");
            std::process::exit(1);
        }
    }
    let round_trip = client
        .stats()
        .iter()
        .find(|s| s.procedure == Procedure::Null)
        .map(|s| format!("{:?}", s.p50))
        .unwrap_or_else(|| "-".into());
    let start = Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let print = args.print;
    let walker = Walker::new(client.clone()).in_flight(args.in_flight);
    let result = walker
        .walk(client.root(), |item| {
            if let (true, Item::Entry(entry)) = (print, &item) {
                let _ = out.write_all(&entry.path);
                let _ = out.write_all(b"\0");
            }
            if let Item::Error { path, error } = item {
                eprintln!("{}: {error}", String::from_utf8_lossy(&path));
            }
        })
        .await;
    let _ = out.flush();
    let seconds = start.elapsed().as_secs_f64();
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("scanjob-nfs-ls: {e}");
            std::process::exit(1);
        }
    };
    // The walk's calls: not the pings, nor GETPORT and MNT before it.
    let calls: u64 = client
        .stats()
        .iter()
        .filter(|s| {
            !matches!(
                s.procedure,
                Procedure::Null | Procedure::GetPort | Procedure::Mount
            )
        })
        .map(|s| s.calls)
        .sum();
    let mut report = String::new();
    report.push_str(&format!(
        "entries={} directories={} errors={} seconds={seconds:.2} entries_per_s={:.0} \
         calls={calls} calls_per_entry={:.4} connections={} in_flight={} \
         round_trip_p50={round_trip}\n",
        summary.entries,
        summary.directories,
        summary.errors,
        summary.entries as f64 / seconds,
        calls as f64 / summary.entries.max(1) as f64,
        args.connections,
        args.in_flight,
    ));
    for s in client.stats() {
        report.push_str(&format!(
            "  {:<12} calls={} errors={} retries={} p50={:?} p90={:?} p99={:?} max={:?}\n",
            s.procedure.name(),
            s.calls,
            s.errors,
            s.retries,
            s.p50,
            s.p90,
            s.p99,
            s.max
        ));
    }
    for (i, c) in client.connection_stats().iter().enumerate() {
        report.push_str(&format!(
            "  connection {i}: calls={} max_in_flight={}\n",
            c.calls, c.max_in_flight
        ));
    }
    if print {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
}
