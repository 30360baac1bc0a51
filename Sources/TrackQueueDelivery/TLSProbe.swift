import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import TrackQueueSupport
import X509

/// Finds out why the API's certificate was not trusted: BoringSSL says only that it did not
/// verify. Run after such a failure (so at most once a retry): one more connection whose
/// handshake reads the certificates the API presents and then fails, sending nothing.
package enum TLSProbe {
    /// What a certificate says of itself, read from the API: outside text, bounded when shown.
    package struct Facts: Sendable, Equatable {
        package var subject: String
        package var issuer: String
        /// Seconds since 1970.
        package var notBefore: Int64
        package var notAfter: Int64

        package init(subject: String, issuer: String, notBefore: Int64, notAfter: Int64) {
            self.subject = subject
            self.issuer = issuer
            self.notBefore = notBefore
            self.notAfter = notAfter
        }

        package init(_ certificate: NIOSSLCertificate) {
            let parsed = (try? certificate.toDERBytes()).flatMap { try? Certificate(derEncoded: $0) }
            self.init(
                subject: parsed.map { "\($0.subject)" } ?? "?", issuer: parsed.map { "\($0.issuer)" } ?? "?",
                notBefore: Int64(certificate.notValidBefore), notAfter: Int64(certificate.notValidAfter))
        }
    }

    /// Why a chain the API presented was not trusted, for ``TLSFailure/untrusted``: a
    /// certificate expired or not yet valid, else an unknown CA, naming its issuer.
    package static func diagnosis(_ chain: [Facts], nowSeconds: Int64) -> String? {
        guard let leaf = chain.first else { return nil }
        for (index, certificate) in chain.enumerated() {
            let whose = index == 0 ? "the API's certificate" : "the certificate of its CA \(shown(certificate.subject))"
            if nowSeconds > certificate.notAfter {
                return "\(whose) expired on \(TLSFailure.date(certificate.notAfter))"
            }
            if nowSeconds < certificate.notBefore {
                return "\(whose) is not valid until \(TLSFailure.date(certificate.notBefore)): is this host's clock right?"
            }
        }
        let top = chain[chain.count - 1]
        if chain.count == 1 && leaf.issuer == leaf.subject {
            return "the API's certificate is not trusted (self-signed: \(shown(leaf.subject))): add it with --ca-file"
        }
        return "the API's certificate is not trusted (unknown CA: issued by \(shown(top.issuer))): add that CA with --ca-file"
    }

    /// The chain the API at `host`:`port` presents, or nil if none came within `timeout`.
    package static func peerChain(
        host: String, port: Int, configuration: TLSConfiguration?, group: any EventLoopGroup, timeout: TimeAmount = .seconds(10)
    ) async -> [NIOSSLCertificate]? {
        var tls = configuration ?? .makeClientConfiguration()
        tls.certificateVerification = .noHostnameVerification
        guard let context = try? NIOSSLContext(configuration: tls) else { return nil }
        let captured = NIOLockedValueBox<[NIOSSLCertificate]?>(nil)
        // SNI carries names only.
        let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(
                        context: context, serverHostname: serverName,
                        customVerificationCallback: { (chain: [NIOSSLCertificate], promise: EventLoopPromise<NIOSSLVerificationResult>) in
                            captured.withLockedValue { $0 = chain }
                            promise.succeed(NIOSSLVerificationResult.failed)
                        })
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        guard let channel = try? await bootstrap.connect(host: host, port: port).get() else { return nil }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(mode: .all, promise: nil) }
        try? await channel.closeFuture.get()
        deadline.cancel()
        return captured.withLockedValue { $0 }
    }

    private static func shown(_ name: String) -> String { Printable.oneLine(name, limit: 120) }
}
