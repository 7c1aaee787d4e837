use super::programs::{loadable_setup, privilege, try_load};
use super::{Cache, Support};
use crate::insn::helpers::HELPER_NAMES;
use crate::insn::{encode, CallTarget, Instruction};
use crate::types::ProgramType;

static CACHE: Cache<(ProgramType, i32)> = Cache::new();

/// Whether programs of `program_type` may call helper `id`.
///
/// The verifier answers in its log: "invalid func" (no such helper), "unknown func" or
/// "program of this type cannot use helper" mean no. Any other outcome — a load, or a
/// complaint about the arguments — means the verifier accepted the call itself.
pub fn helper(program_type: ProgramType, id: i32) -> Support {
    CACHE.get_or_probe((program_type, id), || probe(program_type, id))
}

fn probe(program_type: ProgramType, id: i32) -> Support {
    if let Err(why) = privilege() {
        return Support::Unknown(why);
    }
    match super::programs::program_type(program_type) {
        Support::Yes => {}
        Support::No(why) => return Support::No(format!("program type unavailable: {why}")),
        Support::Unknown(why) => return Support::Unknown(format!("program type unknown: {why}")),
    }
    let Some(setup) = loadable_setup(program_type) else {
        return Support::Unknown(format!("{program_type} programs need an attach target to load; not probed"));
    };
    let insns = encode(&[Instruction::Call(CallTarget::Helper(id)), Instruction::Exit]);
    let (result, log) = try_load(program_type, setup, &insns);
    let refused = ["invalid func ", "unknown func ", "program of this type cannot use helper "];
    match result {
        Ok(_) => Support::Yes,
        Err(_) if refused.iter().any(|text| log.contains(text)) => {
            Support::No(log.lines().rfind(|l| refused.iter().any(|t| l.contains(t))).unwrap_or("").to_owned())
        }
        Err(e) if log.is_empty() => Support::Unknown(format!("probe load failed with {} and no log", e.errno)),
        // The call itself was accepted; the verifier objected to something else (arguments).
        Err(_) => Support::Yes,
    }
}

/// The helpers programs of `program_type` may call, by name, or why that can't be told.
pub fn helpers_for(program_type: ProgramType) -> Result<Vec<&'static str>, String> {
    match super::programs::program_type(program_type) {
        Support::Yes => {}
        // No programs of this type, so no helpers either.
        Support::No(_) => return Ok(Vec::new()),
        Support::Unknown(why) => return Err(format!("program type unknown: {why}")),
    }
    if loadable_setup(program_type).is_none() {
        return Err(format!("{program_type} programs need an attach target to load; helpers not probed"));
    }
    let mut names = Vec::new();
    for (index, name) in HELPER_NAMES.iter().enumerate() {
        match helper(program_type, index as i32 + 1) {
            Support::Yes => names.push(*name),
            Support::No(_) => {}
            Support::Unknown(why) => return Err(format!("{name}: {why}")),
        }
    }
    Ok(names)
}
