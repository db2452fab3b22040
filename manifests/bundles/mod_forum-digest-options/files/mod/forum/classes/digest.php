<?php
// Daily digest: the hour is a user preference (default 17:00, as before).
namespace mod_forum;

defined('MOODLE_INTERNAL') || die();

class digest {
    public const DEFAULT_HOUR = 17;
}
