//! Tests of `config`: the settings checks clap cannot express.

use super::*;

fn dev(listen: &str) -> Settings {
    let mut s = Settings::defaults();
    s.env = Environment::Dev;
    s.jwt_secret = None;
    s.client_ip_header = None;
    s.trusted_proxies = vec![];
    s.listen_addr = listen.parse().unwrap();
    s.images.image_store = ImageStoreKind::Local;
    s.images.aws_access_key_id = None;
    s.images.aws_secret_access_key = None;
    s
}

#[test]
fn no_built_in_secret_off_loopback() {
    for addr in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080"] {
        let err = dev(addr).validate().unwrap_err();
        assert!(
            matches!(err, SettingsError::BuiltInSecretOffLoopback(_)),
            "{addr}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("FLOODGATE_JWT_SECRET") && msg.contains(addr),
            "{msg}"
        );
    }
    let mut s = dev("0.0.0.0:8080");
    s.jwt_secret = Some(SecretString::from("x".repeat(32)));
    assert!(s.validate().is_ok());
    assert!(!s.uses_built_in_secret());
}

#[test]
fn built_in_secret_only_in_dev_on_loopback() {
    for addr in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:9000"] {
        let s = dev(addr);
        assert!(s.validate().is_ok(), "{addr}");
        assert!(s.uses_built_in_secret());
    }
    let mut s = dev("127.0.0.1:8080");
    s.env = Environment::Production;
    assert!(matches!(s.validate(), Err(SettingsError::MissingJwtSecret)));
}

#[test]
fn redis_tls_settings_need_rediss_and_both_halves() {
    let mut s = dev("127.0.0.1:8080");
    s.redis_ca_file = Some("/etc/ca.pem".into());
    let err = s.validate().unwrap_err();
    assert!(matches!(err, SettingsError::RedisTlsWithoutRediss), "{err}");
    s.redis_url = SecretString::from("rediss://redis.example:6380");
    assert!(s.validate().is_ok());
    s.redis_client_cert_file = Some("/etc/client.pem".into());
    assert!(matches!(
        s.validate(),
        Err(SettingsError::RedisClientCertHalf)
    ));
    s.redis_client_key_file = Some("/etc/client.key".into());
    assert!(s.validate().is_ok());
}

#[test]
fn a_transaction_pooler_needs_a_direct_url_for_migrations() {
    let mut s = dev("127.0.0.1:8080");
    s.db_pooler = DbPooler::Transaction;
    let err = s.validate().unwrap_err();
    assert!(
        matches!(err, SettingsError::PoolerWithoutMigrationUrl),
        "{err}"
    );
    s.db_migration_url = Some(SecretString::from("postgres://db:5432/floodgate"));
    assert!(s.validate().is_ok());
}

#[test]
fn client_ip_header_needs_trusted_proxies() {
    let mut s = dev("127.0.0.1:8080");
    s.client_ip_header = Some("x-forwarded-for".into());
    assert!(matches!(
        s.validate(),
        Err(SettingsError::ClientIpHeaderWithoutProxies)
    ));
    s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    assert!(s.validate().is_ok());
}

#[test]
fn s3_image_store_needs_a_bucket_and_whole_credentials() {
    let mut s = dev("127.0.0.1:8080");
    s.images.image_store = ImageStoreKind::S3;
    s.images.image_s3_bucket = None;
    assert!(matches!(
        s.validate(),
        Err(SettingsError::MissingImageBucket)
    ));
    s.images.image_s3_bucket = Some("goods".into());
    s.images.aws_access_key_id = Some(SecretString::from("key"));
    s.images.aws_secret_access_key = None;
    assert!(matches!(
        s.validate(),
        Err(SettingsError::HalfImageCredentials)
    ));
    s.images.aws_secret_access_key = Some(SecretString::from("secret"));
    assert!(s.validate().is_ok());
}

#[test]
fn trusted_proxies_parse_from_a_list() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: Settings,
    }
    let w = Wrapper::try_parse_from([
        "floodgate-app",
        "--trusted-proxies",
        "10.0.0.0/8, 192.168.1.1,fd00::/8",
    ])
    .unwrap();
    assert_eq!(w.settings.trusted_proxies.len(), 3);
    assert!(
        Wrapper::try_parse_from(["floodgate-app", "--trusted-proxies", "10.0.0.0/40"]).is_err()
    );
}
