import NIOSSL
import TrackQueueSupport

/// Why a TLS handshake with the API failed, in words a person can act on: what the status,
/// the log and the `tls` alert say, never an error type's name.
///
/// The HTTP client reports BoringSSL's reason codes (`CERTIFICATE_VERIFY_FAILED`,
/// `TLSV1_ALERT_CERTIFICATE_REQUIRED`, …); they are read here. Why a certificate did not
/// verify (an unknown CA, expired, not yet valid) is not among them: ``TLSProbe`` finds that.
package enum TLSFailure: Sendable, Equatable {
    /// The API's certificate did not verify against the CAs trusted.
    case untrusted
    /// The API's certificate does not name the endpoint's host.
    case wrongHost(String)
    /// The API wants a client certificate and none was sent.
    case clientCertificateRequired
    /// The API refused the client certificate; BoringSSL's reason for the API's alert.
    case clientCertificateRefused(String)
    /// The API did not answer in TLS (an http server behind an https endpoint).
    case notTLS
    /// Another failure of the handshake, maybe passing: a transport error, retried.
    case handshake(String)

    /// The TLS failure `error` is, if it is one.
    package static func classify(_ error: any Error, host: String) -> TLSFailure? {
        if let error = error as? NIOSSLExtraError {
            return error == .failedToValidateHostname ? .wrongHost(host) : .handshake("the API's certificate does not fit its host")
        }
        let stack: NIOBoringSSLErrorStack
        switch error {
        case let error as NIOSSLError:
            switch error {
            case .handshakeFailed(let boring), .shutdownFailed(let boring): stack = Self.stack(boring)
            case .uncleanShutdown: return nil  // the connection ended; not the handshake's doing
            default: return .handshake("\(error)")  // a case name of NIOSSL's enum, no values
            }
        case let error as BoringSSLError:
            stack = Self.stack(error)
        default:
            return nil
        }
        let reasons = stack.compactMap { reason(in: "\($0)") }
        return classify(reasons: reasons)
    }

    /// The failure BoringSSL's reason codes mean.
    package static func classify(reasons: [String]) -> TLSFailure {
        for reason in reasons {
            switch reason {
            case "CERTIFICATE_VERIFY_FAILED":
                return .untrusted
            case "TLSV1_ALERT_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE":
                return .clientCertificateRequired
            case "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
                "SSLV3_ALERT_CERTIFICATE_UNKNOWN":
                return .clientCertificateRefused(reason)
            case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST":
                return .notTLS
            default:
                continue
            }
        }
        return .handshake(reasons.first ?? "no reason given")
    }

    /// Whether a person must act (an alert), rather than a failure that may pass.
    package var needsPerson: Bool {
        if case .handshake = self { return false }
        return true
    }

    /// The words for the status, the log and the alert.
    ///
    /// - Parameters:
    ///   - diagnosis: for ``untrusted``, what ``TLSProbe`` found, if it could look.
    ///   - clientCertificateNotAfter: when the client certificate set expires, if one is set.
    package func message(diagnosis: String? = nil, clientCertificateNotAfter: Int64? = nil) -> String {
        switch self {
        case .untrusted:
            return "TLS: "
                + (diagnosis
                    ?? "the API's certificate is not trusted (an unknown CA, or a certificate expired or not yet valid): "
                    + "check --ca-file and this host's clock")
        case .wrongHost(let host):
            return "TLS: the API's certificate is not for \(Printable.oneLine(host, limit: 100)): check --endpoint"
        case .clientCertificateRequired:
            return clientCertificateNotAfter == nil
                ? "TLS: the API asked for a client certificate: set --client-cert and --client-key"
                : "TLS: the API asked for a client certificate and took none of ours: check --client-cert"
        case .clientCertificateRefused(let reason):
            let why =
                switch reason {
                case "TLSV1_ALERT_UNKNOWN_CA": "its CA is not one the API trusts"
                case "SSLV3_ALERT_CERTIFICATE_EXPIRED":
                    "it has expired" + (clientCertificateNotAfter.map { " (on \(Self.date($0)))" } ?? "")
                case "SSLV3_ALERT_CERTIFICATE_REVOKED": "it was revoked"
                case "TLSV1_ALERT_ACCESS_DENIED": "access denied"
                default: "a bad certificate (\(reason))"
                }
            return "TLS: the API refused our client certificate (--client-cert): \(why)"
        case .notTLS:
            return "TLS: the API did not answer in TLS: should --endpoint start with http:// ?"
        case .handshake(let reason):
            return "TLS: the handshake failed (\(reason))"
        }
    }

    /// `2026-12-07 07:21 UTC`.
    package static func date(_ unixSeconds: Int64) -> String {
        let days = CivilCalendar.days(unixSeconds: unixSeconds)
        let (year, month, day) = CivilCalendar.date(days: days)
        let seconds = unixSeconds - days * 86_400
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(seconds / 3600)):\(two(seconds % 3600 / 60)) UTC"
    }

    /// BoringSSL's reason code in one of its error lines
    /// (`error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at …`).
    package static func reason(in line: String) -> String? {
        guard let start = line.range(of: "OPENSSL_internal:")?.upperBound else { return nil }
        let code = line[start...].prefix { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }
        return code.isEmpty ? nil : String(code)
    }

    private static func stack(_ error: BoringSSLError) -> NIOBoringSSLErrorStack {
        switch error {
        case .sslError(let stack), .unknownError(let stack), .invalidSNIName(let stack), .failedToSetALPN(let stack): stack
        default: []
        }
    }
}
