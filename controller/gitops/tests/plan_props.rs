//! Properties of the GitSource plan (apply, prune, opt-out, suspend) over random inventories and clusters.

use std::collections::{BTreeMap, BTreeSet};

use paddock_api::crds::Kind;
use paddock_gitops::plan::{LiveObject, ObjectKey, PlanInput, plan};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = ObjectKey> {
    // A small name space so that desired, inventory and live overlap often.
    (prop_oneof![Just(Kind::Agent), Just(Kind::Policy)], 0u8..12)
        .prop_map(|(kind, n)| ObjectKey::new(kind, "team-a", format!("o{n}")))
}

fn input() -> impl Strategy<Value = PlanInput> {
    (
        prop::collection::vec(key(), 0..12),
        prop::collection::vec(key(), 0..12),
        prop::collection::btree_map(key(), any::<bool>(), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(desired, inventory, live, prune, suspend)| PlanInput {
            desired,
            inventory,
            live: live.into_iter().map(|(k, d)| (k, LiveObject { prune_disabled: d })).collect(),
            prune,
            suspend,
        })
}

fn set(v: &[ObjectKey]) -> BTreeSet<ObjectKey> {
    v.iter().cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn suspended_sources_touch_nothing(mut i in input()) {
        i.suspend = true;
        let p = plan(&i);
        prop_assert!(p.apply.is_empty());
        prop_assert!(p.prune.is_empty());
        prop_assert!(p.orphan.is_empty());
        prop_assert_eq!(set(&p.inventory), set(&i.inventory));
    }

    #[test]
    fn every_desired_object_is_applied_each_sync(mut i in input()) {
        i.suspend = false;
        let p = plan(&i);
        // Every sync applies everything, which is what undoes drift.
        prop_assert_eq!(set(&p.apply), set(&i.desired));
        prop_assert_eq!(p.apply.len(), set(&i.desired).len(), "each object once");
        prop_assert_eq!(set(&p.inventory), set(&i.desired));
    }

    #[test]
    fn prune_deletes_only_live_managed_objects_that_left_git(i in input()) {
        let p = plan(&i);
        let desired = set(&i.desired);
        let inventory = set(&i.inventory);
        for k in &p.prune {
            prop_assert!(!desired.contains(k), "pruned an object still in git: {}", k);
            let live = i.live.get(k);
            prop_assert!(live.is_some(), "deleting an object that is not live: {}", k);
            prop_assert!(!live.unwrap().prune_disabled, "pruned an object that opted out: {}", k);
            prop_assert!(inventory.contains(k) || i.live.contains_key(k));
        }
        if !i.prune || i.suspend {
            prop_assert!(p.prune.is_empty());
        }
        prop_assert_eq!(p.prune.len(), set(&p.prune).len(), "each object once");
    }

    #[test]
    fn what_left_git_is_pruned_or_reported_exactly_once(mut i in input()) {
        i.suspend = false;
        let p = plan(&i);
        let desired = set(&i.desired);
        let pruned = set(&p.prune);
        let orphaned = set(&p.orphan);
        prop_assert!(pruned.is_disjoint(&orphaned));
        for k in set(&i.inventory).difference(&desired) {
            match i.live.get(k) {
                None => prop_assert!(!pruned.contains(k) && !orphaned.contains(k), "gone objects are just dropped"),
                Some(l) if i.prune && !l.prune_disabled => prop_assert!(pruned.contains(k)),
                Some(_) => prop_assert!(orphaned.contains(k), "kept without being reported: {}", k),
            }
        }
        for k in &orphaned {
            prop_assert!(set(&i.inventory).contains(k), "only objects we managed are reported as left behind");
        }
    }

    #[test]
    fn the_plan_is_a_function_of_its_input(i in input()) {
        let mut shuffled = i.clone();
        shuffled.desired.reverse();
        shuffled.inventory.reverse();
        prop_assert_eq!(plan(&i), plan(&shuffled));
    }
}

#[test]
fn objects_outside_the_inventory_and_labels_are_never_touched() {
    let ours = ObjectKey::new(Kind::Agent, "team-a", "ours");
    let input = PlanInput {
        desired: vec![],
        inventory: vec![ours.clone()],
        live: BTreeMap::from([(ours.clone(), LiveObject::default())]),
        prune: true,
        suspend: false,
    };
    // `someone-elses` exists in the cluster but is neither in the inventory nor labelled by this source,
    // so it is not in `live` and cannot be planned for deletion.
    assert_eq!(plan(&input).prune, vec![ours]);
}
