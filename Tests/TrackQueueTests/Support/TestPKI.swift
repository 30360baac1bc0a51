import Foundation
import NIOSSL

/// Certificates made by `openssl` for one test, in a test directory: CAs, server
/// certificates for 127.0.0.1, client certificates. EC P-256 keys, made in milliseconds.
struct TestPKI {
    /// A certificate and its key, as PEM files.
    struct Pair {
        var certificate: String
        var key: String
    }

    let directory: String
    private var serial = 0

    init(in directory: String) {
        self.directory = directory
    }

    /// A self-signed CA named `name`.
    mutating func ca(_ name: String) throws -> Pair {
        let pair = next(name)
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out",
            pair.certificate, "-days", "30", "-subj", "/CN=\(name)", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        return pair
    }

    /// A certificate for 127.0.0.1 (server) or a client, signed by `ca`, valid for `days`
    /// (0: it expires the second it is made).
    mutating func certificate(_ name: String, signedBy ca: Pair, server: Bool = true, days: Int = 30) throws -> Pair {
        let pair = next(name)
        let request = pair.certificate + ".csr"
        let extensions = pair.certificate + ".ext"
        try openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", request,
            "-subj", "/CN=\(name)",
        ])
        try (server ? "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" : "extendedKeyUsage=clientAuth\n")
            .write(toFile: extensions, atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", request, "-CA", ca.certificate, "-CAkey", ca.key, "-set_serial", "\(serial + 1000)", "-out",
            pair.certificate, "-days", "\(days)", "-extfile", extensions,
        ])
        return pair
    }

    /// The server side of TLS with `pair`; with `clientCA`, a client certificate signed by
    /// it is required.
    static func serverTLS(_ pair: Pair, clientCA: Pair? = nil) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(pair.certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: pair.key, format: .pem)))
        if let clientCA {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCA.certificate))
        }
        return tls
    }

    private mutating func next(_ name: String) -> Pair {
        serial += 1
        let base = "\(directory)/pki-\(serial)-\(name.filter { $0.isLetter || $0.isNumber })"
        return Pair(certificate: base + ".pem", key: base + ".key")
    }

    private func openssl(_ arguments: [String]) throws {
        let result = try runCommand("/usr/bin/openssl", arguments)
        guard result.status == 0 else {
            throw PKIError(message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(result.stderr)")
        }
    }

    struct PKIError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
