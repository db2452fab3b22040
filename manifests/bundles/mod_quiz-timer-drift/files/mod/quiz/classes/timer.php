<?php
// Quiz timer: the deadline is computed from the attempt start and the server's monotonic
// offset, so a clock jump no longer shortens or lengthens an open attempt.
namespace mod_quiz;

defined('MOODLE_INTERNAL') || die();

class timer {
    public static function deadline(int $timestart, int $timelimit, int $offset = 0): int {
        return $timestart + $timelimit + $offset;
    }
}
