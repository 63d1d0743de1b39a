//! The bucket types of the data-type operations: each data type the mix uses needs a bucket type
//! whose `datatype` property names it (`--counter-type`, `--set-type`, `--map-type`).
//!
//! Before any load, each is looked up through a Rill node's admin endpoints (`--admin-node`),
//! with the same client `rill admin bucket-type` uses, and created and activated there if it is
//! missing or inactive. A server without usable admin endpoints — Riak, or a Rill node that
//! serves them to loopback clients only — is asked over the run's own protocol whether the type
//! exists with the right datatype; if it does not, the run stops before it starts with the
//! commands that create the type, rather than reporting every operation as an error.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::client::Conn;
use super::options::Config;
use super::workload::DataType;
use crate::admin::Client;

/// How long a freshly created type may take to reach every member of a cluster before its
/// activation is given up: the node refuses to activate a type some member lacks, and says so.
const ACTIVATE_PATIENCE: Duration = Duration::from_secs(10);
const ACTIVATE_RETRY: Duration = Duration::from_millis(200);

/// What the admin endpoints had to do for one bucket type.
#[derive(Debug)]
enum Setup {
    /// It existed, active, with the right datatype.
    Ready,
    Created,
    Activated,
    /// The admin endpoints could not be used: the type must be checked another way.
    Unavailable(anyhow::Error),
}

/// Makes sure every bucket type the mix needs exists, is active and has the right datatype.
pub async fn ensure(config: &Config) -> anyhow::Result<()> {
    for dt in config.mix.data_types() {
        let name = config.types.of(dt).to_owned();
        let admin = config.admin_node.clone();
        // ureq is blocking: keep it off the runtime's workers.
        let setup = tokio::task::spawn_blocking({
            let name = name.clone();
            move || via_admin(&admin, &name, dt)
        })
        .await
        .context("bucket type setup failed")??;
        match setup {
            Setup::Ready => {}
            Setup::Created => eprintln!(
                "created and activated bucket type {name} (datatype {}) through {}",
                dt.name(),
                config.admin_node
            ),
            Setup::Activated => {
                eprintln!("activated bucket type {name} through {}", config.admin_node)
            }
            Setup::Unavailable(admin_err) => via_protocol(config, &name, dt, &admin_err).await?,
        }
    }
    Ok(())
}

/// Looks the type up through the admin endpoints at `admin`, creating and activating it as
/// needed. An error is a definite refusal (wrong datatype, creation refused); endpoints that
/// cannot be used at all come back as [`Setup::Unavailable`].
fn via_admin(admin: &str, name: &str, dt: DataType) -> anyhow::Result<Setup> {
    let client = Client::new(admin);
    let types = match client.list_types() {
        Ok(types) => types,
        Err(e) => return Ok(Setup::Unavailable(e)),
    };
    let activate = || activate_patiently(&client, name);
    match types.iter().find(|(n, _)| n == name) {
        None => {
            let props = json!({ "props": { "datatype": dt.name() } });
            client
                .create_type(name, &props)
                .with_context(|| format!("creating bucket type {name} through {admin}"))?;
            activate()?;
            Ok(Setup::Created)
        }
        Some((_, active)) => {
            let status = client
                .type_status(name)
                .with_context(|| format!("reading bucket type {name} through {admin}"))?;
            check_datatype(name, dt, status["props"]["datatype"].as_str())?;
            if *active {
                Ok(Setup::Ready)
            } else {
                activate()?;
                Ok(Setup::Activated)
            }
        }
    }
}

/// Activates `name`, retrying while the node says a cluster member does not have it yet.
fn activate_patiently(client: &Client, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match client.activate_type(name) {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() < ACTIVATE_PATIENCE => {
                tracing::debug!("activating bucket type {name}: {e:#}; retrying");
                std::thread::sleep(ACTIVATE_RETRY);
            }
            Err(e) => return Err(e.context(format!("activating bucket type {name}"))),
        }
    }
}

/// Without admin endpoints: asks the first target, over the run's protocol, for the type's
/// datatype. A type it does not know stops the run with the commands that create it.
async fn via_protocol(
    config: &Config,
    name: &str,
    dt: DataType,
    admin_err: &anyhow::Error,
) -> anyhow::Result<()> {
    let target = config.targets[0].clone();
    let mut conn = Conn::new(config.protocol, target.clone());
    let answer = tokio::time::timeout(config.timeout, conn.type_datatype(name))
        .await
        .map_err(|_| anyhow::anyhow!("{target}: timed out asking for bucket type {name}"))?;
    match answer {
        Ok(datatype) => check_datatype(name, dt, datatype.as_deref()),
        // A server that cannot be reached says nothing about the type: say what is wrong, as
        // connecting the workers would.
        Err(e) if e.is_connection() => {
            Err(anyhow::Error::msg(e)).with_context(|| format!("connecting to {target}"))
        }
        Err(e) => bail!(
            "{}",
            missing_type_help(config, name, dt, admin_err, &anyhow::Error::msg(e))
        ),
    }
}

/// Refuses a type whose datatype is not `dt`'s.
fn check_datatype(name: &str, dt: DataType, found: Option<&str>) -> anyhow::Result<()> {
    match found {
        Some(d) if d == dt.name() => Ok(()),
        found => bail!(
            "bucket type {name} has datatype {}, but the {} operations need datatype {}: name another type with --{}-type",
            found.unwrap_or("none"),
            dt.name(),
            dt.name(),
            dt.name()
        ),
    }
}

/// The message for a type that could be neither found nor created: both reasons, and the
/// commands that create it.
fn missing_type_help(
    config: &Config,
    name: &str,
    dt: DataType,
    admin_err: &anyhow::Error,
    target_err: &anyhow::Error,
) -> String {
    format!(
        "the {dt} operations need bucket type {name} with datatype {dt}, and it could not be set up:\n  \
         admin endpoints at {admin}: {admin_err:#}\n  \
         {target}: {target_err:#}\n\
         Create it on the node (or point --admin-node at the node's HTTP address):\n  \
         rill admin --node {admin} bucket-type create {name} '{{\"props\":{{\"datatype\":\"{dt}\"}}}}'\n  \
         rill admin --node {admin} bucket-type activate {name}",
        dt = dt.name(),
        admin = config.admin_node,
        target = config.targets[0],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_matching_datatype_passes() {
        assert!(check_datatype("sets", DataType::Set, Some("set")).is_ok());
        let wrong = check_datatype("sets", DataType::Set, Some("map")).unwrap_err();
        let text = wrong.to_string();
        assert!(text.contains("datatype map"), "{text}");
        assert!(text.contains("--set-type"), "{text}");
        let none = check_datatype("plain", DataType::Counter, None).unwrap_err();
        assert!(none.to_string().contains("datatype none"), "{none}");
    }

    #[test]
    fn an_unreachable_admin_endpoint_is_not_a_refusal() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        match via_admin("127.0.0.1:1", "sets", DataType::Set).unwrap() {
            Setup::Unavailable(e) => {
                assert!(format!("{e:#}").contains("127.0.0.1:1"), "{e:#}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn the_help_names_both_failures_and_the_commands() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: crate::bench::BenchArgs,
        }
        let argv = ["bench", "--mix", "set_add=1", "--targets", "10.0.0.1:8087"];
        let config = Config::from_args(Wrapper::parse_from(argv).args, 1).unwrap();
        let help = missing_type_help(
            &config,
            "sets",
            DataType::Set,
            &anyhow::anyhow!("connection refused"),
            &anyhow::anyhow!("server error: Unknown bucket type: sets"),
        );
        for expected in [
            "the set operations need bucket type sets with datatype set",
            "admin endpoints at 127.0.0.1:8098: connection refused",
            "10.0.0.1:8087: server error: Unknown bucket type: sets",
            "rill admin --node 127.0.0.1:8098 bucket-type create sets '{\"props\":{\"datatype\":\"set\"}}'",
            "rill admin --node 127.0.0.1:8098 bucket-type activate sets",
        ] {
            assert!(help.contains(expected), "{expected:?} in:\n{help}");
        }
    }
}
