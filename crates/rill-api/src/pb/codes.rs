//! The message code: the byte after the length prefix of every Riak PB frame.
//!
//! The code says which protobuf message the body holds, since protobuf
//! bodies do not name their own type. The table is Riak's
//! (`riak_pb_messages.csv`), complete including the parts of the protocol
//! Rill does not serve (time series, replication, AAE folds), so that the
//! server can name what a client asked for when it refuses it.

use std::fmt;

/// Declares [`MessageCode`] from one `Variant = code => "RiakName"` table so
/// that the enum, the byte conversion and the names cannot drift apart.
macro_rules! message_codes {
    ($($variant:ident = $code:literal => $name:literal,)+) => {
        /// A Riak Protocol Buffers message code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MessageCode {
            $(
                #[doc = concat!("`", $name, "` (code ", stringify!($code), ").")]
                $variant = $code,
            )+
        }

        impl MessageCode {
            /// Every message code, in ascending order.
            pub const ALL: &'static [MessageCode] = &[$(MessageCode::$variant,)+];

            /// The code for `byte`, or `None` if Riak defines no message with it.
            pub const fn from_u8(byte: u8) -> Option<MessageCode> {
                match byte {
                    $($code => Some(MessageCode::$variant),)+
                    _ => None,
                }
            }

            /// Riak's name for the message, e.g. `"RpbGetReq"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(MessageCode::$variant => $name,)+
                }
            }
        }
    };
}

message_codes! {
    ErrorResp = 0 => "RpbErrorResp",
    PingReq = 1 => "RpbPingReq",
    PingResp = 2 => "RpbPingResp",
    GetClientIdReq = 3 => "RpbGetClientIdReq",
    GetClientIdResp = 4 => "RpbGetClientIdResp",
    SetClientIdReq = 5 => "RpbSetClientIdReq",
    SetClientIdResp = 6 => "RpbSetClientIdResp",
    GetServerInfoReq = 7 => "RpbGetServerInfoReq",
    GetServerInfoResp = 8 => "RpbGetServerInfoResp",
    GetReq = 9 => "RpbGetReq",
    GetResp = 10 => "RpbGetResp",
    PutReq = 11 => "RpbPutReq",
    PutResp = 12 => "RpbPutResp",
    DelReq = 13 => "RpbDelReq",
    DelResp = 14 => "RpbDelResp",
    ListBucketsReq = 15 => "RpbListBucketsReq",
    ListBucketsResp = 16 => "RpbListBucketsResp",
    ListKeysReq = 17 => "RpbListKeysReq",
    ListKeysResp = 18 => "RpbListKeysResp",
    GetBucketReq = 19 => "RpbGetBucketReq",
    GetBucketResp = 20 => "RpbGetBucketResp",
    SetBucketReq = 21 => "RpbSetBucketReq",
    SetBucketResp = 22 => "RpbSetBucketResp",
    MapRedReq = 23 => "RpbMapRedReq",
    MapRedResp = 24 => "RpbMapRedResp",
    IndexReq = 25 => "RpbIndexReq",
    IndexResp = 26 => "RpbIndexResp",
    SearchQueryReq = 27 => "RpbSearchQueryReq",
    SearchQueryResp = 28 => "RpbSearchQueryResp",
    ResetBucketReq = 29 => "RpbResetBucketReq",
    ResetBucketResp = 30 => "RpbResetBucketResp",
    GetBucketTypeReq = 31 => "RpbGetBucketTypeReq",
    SetBucketTypeReq = 32 => "RpbSetBucketTypeReq",
    GetBucketKeyPreflistReq = 33 => "RpbGetBucketKeyPreflistReq",
    GetBucketKeyPreflistResp = 34 => "RpbGetBucketKeyPreflistResp",
    CsBucketReq = 40 => "RpbCSBucketReq",
    CsBucketResp = 41 => "RpbCSBucketResp",
    IndexBodyResp = 42 => "RpbIndexBodyResp",
    CounterUpdateReq = 50 => "RpbCounterUpdateReq",
    CounterUpdateResp = 51 => "RpbCounterUpdateResp",
    CounterGetReq = 52 => "RpbCounterGetReq",
    CounterGetResp = 53 => "RpbCounterGetResp",
    YokozunaIndexGetReq = 54 => "RpbYokozunaIndexGetReq",
    YokozunaIndexGetResp = 55 => "RpbYokozunaIndexGetResp",
    YokozunaIndexPutReq = 56 => "RpbYokozunaIndexPutReq",
    YokozunaIndexDeleteReq = 57 => "RpbYokozunaIndexDeleteReq",
    YokozunaSchemaGetReq = 58 => "RpbYokozunaSchemaGetReq",
    YokozunaSchemaGetResp = 59 => "RpbYokozunaSchemaGetResp",
    YokozunaSchemaPutReq = 60 => "RpbYokozunaSchemaPutReq",
    CoverageReq = 70 => "RpbCoverageReq",
    CoverageResp = 71 => "RpbCoverageResp",
    DtFetchReq = 80 => "DtFetchReq",
    DtFetchResp = 81 => "DtFetchResp",
    DtUpdateReq = 82 => "DtUpdateReq",
    DtUpdateResp = 83 => "DtUpdateResp",
    TsQueryReq = 90 => "TsQueryReq",
    TsQueryResp = 91 => "TsQueryResp",
    TsPutReq = 92 => "TsPutReq",
    TsPutResp = 93 => "TsPutResp",
    TsDelReq = 94 => "TsDelReq",
    TsDelResp = 95 => "TsDelResp",
    TsGetReq = 96 => "TsGetReq",
    TsGetResp = 97 => "TsGetResp",
    TsListKeysReq = 98 => "TsListKeysReq",
    TsListKeysResp = 99 => "TsListKeysResp",
    TsCoverageReq = 100 => "TsCoverageReq",
    TsCoverageResp = 101 => "TsCoverageResp",
    TsCoverageEntry = 102 => "TsCoverageEntry",
    TsRange = 103 => "TsRange",
    TsTtbMsg = 104 => "TsTtbMsg",
    ReplGetReq = 128 => "RpbReplGetReq",
    ReplGetClusterIdReq = 129 => "RpbReplGetClusterIdReq",
    ReplGetClusterIdResp = 130 => "RpbReplGetClusterIdResp",
    RteReq = 200 => "RpbRTEReq",
    RteResp = 201 => "RpbRTEResp",
    FetchReq = 202 => "RpbFetchReq",
    FetchResp = 203 => "RpbFetchResp",
    PushReq = 204 => "RpbPushReq",
    PushResp = 205 => "RpbPushResp",
    MembershipReq = 206 => "RpbMembershipReq",
    MembershipResp = 207 => "RpbMembershipResp",
    AaeFoldMergeRootNValReq = 210 => "RpbAaeFoldMergeRootNValReq",
    AaeFoldMergeBranchNValReq = 211 => "RpbAaeFoldMergeBranchNValReq",
    AaeFoldFetchClocksNValReq = 212 => "RpbAaeFoldFetchClocksNValReq",
    AaeFoldMergeTreesRangeReq = 213 => "RpbAaeFoldMergeTreesRangeReq",
    AaeFoldFetchClocksRangeReq = 214 => "RpbAaeFoldFetchClocksRangeReq",
    AaeFoldFindKeysReq = 215 => "RpbAaeFoldFindKeysReq",
    AaeFoldObjectStatsReq = 216 => "RpbAaeFoldObjectStatsReq",
    AaeFoldReplKeysReq = 217 => "RpbAaeFoldReplKeysReq",
    AaeFoldFindTombsReq = 218 => "RpbAaeFoldFindTombsReq",
    AaeFoldRepairKeysReq = 219 => "RpbAaeFoldRepairKeysReq",
    AaeFoldTreeResp = 220 => "RpbAaeFoldTreeResp",
    AaeFoldKeyValueResp = 221 => "RpbAaeFoldKeyValueResp",
    AaeFoldKeyCountResp = 222 => "RpbAaeFoldKeyCountResp",
    AaeFoldListBucketsReq = 223 => "RpbAaeFoldListBucketsReq",
    AaeFoldListBucketsResp = 224 => "RpbAaeFoldListBucketsResp",
    AaeFoldReapTombsReq = 230 => "RpbAaeFoldReapTombsReq",
    AaeFoldEraseKeysReq = 231 => "RpbAaeFoldEraseKeysReq",
    AuthReq = 253 => "RpbAuthReq",
    AuthResp = 254 => "RpbAuthResp",
    StartTls = 255 => "RpbStartTls",
}

impl MessageCode {
    /// The byte sent on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A byte that is not a Riak message code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown message code {0}")]
pub struct UnknownCode(pub u8);

impl TryFrom<u8> for MessageCode {
    type Error = UnknownCode;

    fn try_from(byte: u8) -> Result<Self, Self::Error> {
        MessageCode::from_u8(byte).ok_or(UnknownCode(byte))
    }
}

impl From<MessageCode> for u8 {
    fn from(code: MessageCode) -> u8 {
        code.as_u8()
    }
}

impl fmt::Display for MessageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_back_to_itself_or_is_unknown() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            match MessageCode::try_from(byte) {
                Ok(code) => {
                    known += 1;
                    assert_eq!(code.as_u8(), byte);
                }
                Err(err) => assert_eq!(err, UnknownCode(byte)),
            }
        }
        assert_eq!(known, MessageCode::ALL.len());
        assert_eq!(known, 101);
    }

    #[test]
    fn all_is_sorted_and_unique() {
        assert!(
            MessageCode::ALL
                .windows(2)
                .all(|w| w[0].as_u8() < w[1].as_u8())
        );
    }

    #[test]
    fn codes_clients_rely_on() {
        let expected = [
            (0, MessageCode::ErrorResp, "RpbErrorResp"),
            (1, MessageCode::PingReq, "RpbPingReq"),
            (2, MessageCode::PingResp, "RpbPingResp"),
            (8, MessageCode::GetServerInfoResp, "RpbGetServerInfoResp"),
            (9, MessageCode::GetReq, "RpbGetReq"),
            (12, MessageCode::PutResp, "RpbPutResp"),
            (18, MessageCode::ListKeysResp, "RpbListKeysResp"),
            (31, MessageCode::GetBucketTypeReq, "RpbGetBucketTypeReq"),
            (32, MessageCode::SetBucketTypeReq, "RpbSetBucketTypeReq"),
            (
                34,
                MessageCode::GetBucketKeyPreflistResp,
                "RpbGetBucketKeyPreflistResp",
            ),
            (40, MessageCode::CsBucketReq, "RpbCSBucketReq"),
            (42, MessageCode::IndexBodyResp, "RpbIndexBodyResp"),
            (53, MessageCode::CounterGetResp, "RpbCounterGetResp"),
            (
                60,
                MessageCode::YokozunaSchemaPutReq,
                "RpbYokozunaSchemaPutReq",
            ),
            (71, MessageCode::CoverageResp, "RpbCoverageResp"),
            (83, MessageCode::DtUpdateResp, "DtUpdateResp"),
            (253, MessageCode::AuthReq, "RpbAuthReq"),
            (254, MessageCode::AuthResp, "RpbAuthResp"),
            (255, MessageCode::StartTls, "RpbStartTls"),
        ];
        for (byte, code, name) in expected {
            assert_eq!(MessageCode::from_u8(byte), Some(code));
            assert_eq!(code.name(), name);
        }
        for gap in [35, 39, 43, 49, 61, 69, 72, 79, 84, 105, 127, 252] {
            assert_eq!(MessageCode::from_u8(gap), None, "code {gap}");
        }
    }

    #[test]
    fn display_names_the_message_and_code() {
        assert_eq!(MessageCode::DtFetchReq.to_string(), "DtFetchReq (80)");
    }
}
