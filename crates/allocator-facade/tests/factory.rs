//! The factory and the facade, end to end.

use allocator_facade::{
    AllocatorConfig, AllocatorType, CreateAllocatorError, Registry, create, create_by_name,
    create_with_config,
};
use buffer_core::{Queue, Wait};

#[test]
fn every_type_round_trips_through_its_name() {
    for &kind in AllocatorType::ALL {
        assert_eq!(kind.to_string().parse::<AllocatorType>().unwrap(), kind);
        assert_eq!(
            kind.to_string()
                .to_uppercase()
                .parse::<AllocatorType>()
                .unwrap(),
            kind
        );
    }
}

#[test]
fn unknown_names_list_what_is_known() {
    let err = create_by_name("quantum").unwrap_err();
    assert!(matches!(err, CreateAllocatorError::UnknownType(_)));
    assert_eq!(
        err.to_string(),
        "unknown allocator type 'quantum': this build knows auto, normal, shared"
    );
}

#[test]
fn auto_picks_normal() {
    assert_eq!(AllocatorType::Auto.resolve(), AllocatorType::Normal);
    assert_eq!(
        create(AllocatorType::Auto).unwrap().kind(),
        AllocatorType::Normal
    );
    assert_eq!(AllocatorType::default(), AllocatorType::Auto);
}

#[test]
fn config_reaches_the_backend() {
    let facade = create_with_config(
        AllocatorType::Normal,
        &AllocatorConfig::default().with_alignment(1 << 16),
    )
    .unwrap();
    let id = facade
        .allocate_pool_with_buffers(3, 1000, "aligned", "test")
        .unwrap();
    let pool = facade.pool(id).unwrap();
    let guards: Vec<_> = (0..3)
        .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
        .collect();
    assert!(guards.iter().all(|g| g.buffer().virt_addr % (1 << 16) == 0));

    let bad = create_with_config(
        AllocatorType::Normal,
        &AllocatorConfig::default().with_alignment(3),
    );
    assert!(matches!(bad, Err(CreateAllocatorError::Alignment(_))));
}

#[test]
fn the_facade_forwards_the_whole_lifecycle() {
    let facade = create(AllocatorType::Normal).unwrap();
    let id = facade
        .allocate_pool_with_buffers(2, 4096, "facade", "test")
        .unwrap();
    facade.inject_buffer(id, 4096, Queue::Filled).unwrap();
    assert_eq!(facade.pool(id).unwrap().counts().total, 3);
    facade.remove_buffer(id, Wait::NoWait).unwrap();
    assert_eq!(facade.pool_ids(), vec![id]);
    assert_eq!(facade.memory_kind(), buffer_core::MemoryKind::Host);
    let kept = facade.pool(id).unwrap();
    drop(facade);
    assert!(
        Registry::global().get(id).is_err(),
        "dropping the facade destroys its pools"
    );
    assert!(kept.is_closed());
}

#[test]
fn the_shared_type_makes_pools_other_processes_attach_to() {
    let facade = create(AllocatorType::Shared).unwrap();
    assert_eq!(facade.kind(), AllocatorType::Shared);
    let name = format!("facade-shared-{}", std::process::id());
    let id = facade
        .allocate_pool_with_buffers(2, 4096, &name, "video")
        .unwrap();
    let attached = buffer_core::BufferPool::attach(&name).unwrap();
    assert_eq!(attached.id(), id);
    let pool = facade.pool(id).unwrap();
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    frame.as_mut_slice().unwrap()[0] = 5;
    frame.submit();
    assert_eq!(
        attached
            .acquire_filled(Wait::NoWait)
            .unwrap()
            .as_slice()
            .unwrap()[0],
        5
    );
    let err = facade.inject_buffer(id, 4096, Queue::Free).unwrap_err();
    assert!(
        err.to_string().contains("shared between processes"),
        "{err}"
    );
    drop(pool);
    facade.destroy_pool(id).unwrap();
    assert!(buffer_core::BufferPool::attach(&name).is_err());
}

#[test]
fn shared_pools_keep_the_configured_alignment_and_say_their_memory_is_shared() {
    let facade = create_with_config(
        AllocatorType::Shared,
        &AllocatorConfig::default().with_alignment(4096),
    )
    .unwrap();
    assert_eq!(facade.memory_kind(), buffer_core::MemoryKind::SharedHost);
    let name = format!("factory-aligned-{}", std::process::id());
    let id = facade
        .allocate_pool_with_buffers(3, 1000, &name, "test")
        .unwrap();
    let pool = facade.pool(id).unwrap();
    let guards: Vec<_> = (0..3)
        .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
        .collect();
    for guard in &guards {
        let buffer = guard.buffer();
        assert_eq!(buffer.virt_addr % 4096, 0, "{buffer:?}");
        assert_eq!(buffer.kind, buffer_core::MemoryKind::SharedHost);
    }
    drop(guards);

    // Beyond the page, a segment's buffers cannot be aligned in every process: refused.
    let too_much = create_with_config(
        AllocatorType::Shared,
        &AllocatorConfig::default().with_alignment(1 << 16),
    )
    .unwrap();
    let name = format!("factory-overaligned-{}", std::process::id());
    let err = too_much
        .allocate_pool_with_buffers(1, 1000, &name, "test")
        .unwrap_err();
    assert!(err.to_string().contains("alignment 65536"), "{err}");
}
