<?php
// Orphaned sessions are purged in batches of 10,000 instead of one by one.
namespace core\session;

defined('MOODLE_INTERNAL') || die();

class cleanup {
    public const BATCH = 10000;
}
