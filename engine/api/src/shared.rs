//! (being written: types/CRDs/admission/phases owner)
