import NIOSSL
import TrackQueueConfig
import TrackQueueSupport
import TrackQueueSystem

/// What delivery trusts and presents in TLS: `--ca-file` (added to the system's CAs, or
/// instead of them with `--ca-only`), `--client-cert` and `--client-key` (mutual TLS).
///
/// Loaded from the files at start (a problem stops the start, exit 2) and again on SIGHUP (a
/// problem raises a `tls` alert and the loaded trust stays). Reading is blocking: run it on
/// the blocking pool once the daemon runs.
package struct TLSTrust: Sendable {
    /// The client configuration, or nil when no trust setting is given (the HTTP client's
    /// default: the system's CAs, no client certificate).
    package var configuration: TLSConfiguration?
    /// The files it was read from, for messages.
    package var files: Files
    /// When the client certificate stops being valid (seconds since 1970), if one is set.
    package var clientCertificateNotAfter: Int64?

    /// The trust settings.
    package struct Files: Sendable, Equatable {
        package var caFile: String?
        package var caOnly: Bool
        package var clientCertificate: String?
        package var clientKey: String?

        package init(caFile: String? = nil, caOnly: Bool = false, clientCertificate: String? = nil, clientKey: String? = nil) {
            self.caFile = caFile
            self.caOnly = caOnly
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
        }

        package init(_ settings: DaemonSettings) {
            self.init(
                caFile: settings.caFile, caOnly: settings.caOnly, clientCertificate: settings.clientCertificate,
                clientKey: settings.clientKey)
        }

        /// Whether any file is named.
        package var isEmpty: Bool { caFile == nil && clientCertificate == nil && clientKey == nil }
    }

    /// The largest file read: a system's whole CA bundle is about 200 KB.
    package static let maxFileBytes = 4 << 20

    /// Reads and checks the files; nothing named gives the default trust.
    package static func load(_ files: Files) throws(TrustFileError) -> TLSTrust {
        guard !files.isEmpty else { return TLSTrust(configuration: nil, files: files, clientCertificateNotAfter: nil) }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let path = files.caFile {
            let certificates = try certificates(in: path, setting: "--ca-file")
            if files.caOnly {
                configuration.trustRoots = .certificates(certificates)
            } else {
                configuration.additionalTrustRoots = [.certificates(certificates)]
            }
        }
        var notAfter: Int64?
        if let certificatePath = files.clientCertificate, let keyPath = files.clientKey {
            let chain = try certificates(in: certificatePath, setting: "--client-cert")
            let key = try privateKey(in: keyPath)
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
            notAfter = Int64(chain[0].notValidAfter)
            // BoringSSL checks that the key is the certificate's when a context is made.
            do {
                _ = try NIOSSLContext(configuration: configuration)
            } catch {
                throw TrustFileError(
                    setting: "--client-key", path: keyPath,
                    reason: "is not the key of --client-cert \(Printable.oneLine(certificatePath, limit: 200))")
            }
        }
        return TLSTrust(configuration: configuration, files: files, clientCertificateNotAfter: notAfter)
    }

    /// The certificates in a PEM file; at least one.
    private static func certificates(in path: String, setting: String) throws(TrustFileError) -> [NIOSSLCertificate] {
        let bytes = try contents(of: path, setting: setting)
        guard let certificates = try? NIOSSLCertificate.fromPEMBytes(bytes), !certificates.isEmpty else {
            throw TrustFileError(setting: setting, path: path, reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }

    private static func privateKey(in path: String) throws(TrustFileError) -> NIOSSLPrivateKey {
        let bytes = try contents(of: path, setting: "--client-key")
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw TrustFileError(
                setting: "--client-key", path: path, reason: "holds no PEM private key that can be read without a passphrase")
        }
    }

    /// The file's bytes, at most ``maxFileBytes``.
    private static func contents(of path: String, setting: String) throws(TrustFileError) -> [UInt8] {
        switch readFileBytes(path, limit: maxFileBytes + 1) {
        case .failure(let error):
            throw TrustFileError(setting: setting, path: path, reason: "cannot be read: \(error.reason)")
        case .success(let bytes) where bytes.count > maxFileBytes:
            throw TrustFileError(setting: setting, path: path, reason: "is larger than \(maxFileBytes >> 20) MiB: not a PEM file")
        case .success(let bytes):
            return bytes
        }
    }
}

/// A trust file that cannot be used: which setting, which file, and why.
package struct TrustFileError: Error, Sendable, Equatable, CustomStringConvertible {
    package var setting: String
    package var path: String
    package var reason: String

    package init(setting: String, path: String, reason: String) {
        self.setting = setting
        self.path = path
        self.reason = reason
    }

    /// `--ca-file /etc/trackq/ca.pem cannot be read: no such file or directory`.
    package var description: String { "\(setting) \(Printable.oneLine(path, limit: 200)) \(reason)" }
}
