//! What an image means on a node that has no container runtime.

/// How a container with a given image is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// A MariaDB server image: Debian's mariadbd with the pod's configuration.
    MariaDb,
    /// korc's own image: the locally built korc binary.
    Korc,
    /// A MySQL or Percona Server image: the cached MySQL server with the pod's
    /// configuration (whatever version the image names).
    MySql,
    /// Anything else: the container's command and args as a local process.
    Command,
}

/// Classifies `image` (`[registry/][path/]name[:tag][@digest]`) by its last path element.
pub(crate) fn classify(image: &str) -> Runtime {
    match name(image) {
        "mariadb" => Runtime::MariaDb,
        "korc" => Runtime::Korc,
        "mysql" | "mysql-server" | "percona-server" | "percona" => Runtime::MySql,
        _ => Runtime::Command,
    }
}

/// The repository's last path element, without tag or digest.
fn name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_images_by_name() {
        assert_eq!(classify("mariadb:10.11"), Runtime::MariaDb);
        assert_eq!(classify("docker.io/library/mariadb:11.4"), Runtime::MariaDb);
        assert_eq!(classify("quay.io/x/mariadb@sha256:abc"), Runtime::MariaDb);
        assert_eq!(classify("korc"), Runtime::Korc);
        assert_eq!(classify("ghcr.io/korc-dev/korc:0.1.0"), Runtime::Korc);
        assert_eq!(classify("localhost:5000/korc:dev"), Runtime::Korc);
        assert_eq!(classify("mysql:8.4"), Runtime::MySql);
        assert_eq!(classify("mysql/mysql-server:8.0"), Runtime::MySql);
        assert_eq!(classify("percona/percona-server:8.0"), Runtime::MySql);
        assert_eq!(classify("docker.io/library/mysql:9.1"), Runtime::MySql);
        assert_eq!(classify("percona:8.4"), Runtime::MySql);
        assert_eq!(classify("percona-server:8.4"), Runtime::MySql);
        assert_eq!(classify("mysql@sha256:abc"), Runtime::MySql);
        assert_eq!(classify("mysqld-exporter:0.15"), Runtime::Command);
        assert_eq!(classify("busybox:1.36"), Runtime::Command);
        assert_eq!(classify("bitnami/kubectl"), Runtime::Command);
    }
}
