// The chat panel's page. Every text from the extension (the model's answer, tool results, the
// daemon's questions) goes in with textContent, never as HTML; what the page sends back is
// checked again by the extension (src/chat/panelMessages.ts).
// @ts-check
(function () {
    'use strict';
    // eslint-disable-next-line no-undef
    const vscode = acquireVsCodeApi();
    const transcript = /** @type {HTMLElement} */ (document.getElementById('transcript'));
    const form = /** @type {HTMLFormElement} */ (document.getElementById('composer'));
    const prompt = /** @type {HTMLTextAreaElement} */ (document.getElementById('prompt'));
    const send = /** @type {HTMLButtonElement} */ (document.getElementById('send'));
    const stop = /** @type {HTMLButtonElement} */ (document.getElementById('stop'));
    const newChat = /** @type {HTMLButtonElement} */ (document.getElementById('new'));

    /** @type {HTMLElement | undefined} the current turn's answer */
    let answer;
    /** @type {HTMLElement | undefined} the current turn */
    let turn;
    /** @type {Map<number, HTMLElement>} the current turn's tool rows, by step */
    const calls = new Map();

    /** @param {string} tag @param {string} className @param {string} [text] */
    function el(tag, className, text) {
        const node = document.createElement(tag);
        node.className = className;
        if (text !== undefined) {
            node.textContent = text;
        }
        return node;
    }

    function scroll() {
        transcript.scrollTop = transcript.scrollHeight;
    }

    function currentTurn() {
        if (!turn) {
            turn = el('section', 'turn agent');
            transcript.appendChild(turn);
        }
        return turn;
    }

    function currentAnswer() {
        if (!answer) {
            answer = el('div', 'answer');
            currentTurn().appendChild(answer);
        }
        return answer;
    }

    /** @param {boolean} busy */
    function setBusy(busy) {
        send.disabled = busy;
        stop.disabled = !busy;
        document.body.classList.toggle('busy', busy);
    }

    /** @param {{ type: string, [key: string]: any }} message */
    function receive(message) {
        switch (message.type) {
            case 'user': {
                const row = el('section', 'turn user');
                row.appendChild(el('div', 'who', 'You'));
                row.appendChild(el('div', 'text', String(message.text)));
                transcript.appendChild(row);
                turn = undefined;
                answer = undefined;
                calls.clear();
                currentTurn().appendChild(el('div', 'who', 'Llama Agent'));
                break;
            }
            case 'answer':
                currentAnswer().textContent += String(message.text);
                break;
            case 'answerFinal':
                currentAnswer().textContent = String(message.text);
                break;
            case 'toolCall': {
                // A new answer element after each call: the model's next turn follows it.
                answer = undefined;
                const row = el('div', 'tool-call');
                row.dataset.step = String(message.step);
                const head = el('div', 'tool-head');
                head.appendChild(el('span', 'codicon-ish', '⚙'));
                head.appendChild(el('span', 'tool-name', String(message.tool)));
                head.appendChild(el('code', 'tool-args', String(message.args)));
                row.appendChild(head);
                const paths = Array.isArray(message.paths) ? message.paths : [];
                if (paths.length > 0) {
                    const list = el('div', 'tool-paths');
                    for (const file of paths) {
                        const link = el('a', 'tool-path', String(file));
                        link.setAttribute('href', '#');
                        link.addEventListener('click', (event) => {
                            event.preventDefault();
                            vscode.postMessage({ type: 'open', path: String(file) });
                        });
                        list.appendChild(link);
                    }
                    row.appendChild(list);
                }
                calls.set(Number(message.step), row);
                currentTurn().appendChild(row);
                break;
            }
            case 'toolResult': {
                const row = calls.get(Number(message.step)) ?? currentTurn();
                row.appendChild(el('div', message.isError ? 'tool-result error' : 'tool-result', String(message.result)));
                answer = undefined;
                break;
            }
            case 'question': {
                const box = el('div', 'question');
                box.dataset.id = String(message.id);
                box.appendChild(el('div', 'question-text', String(message.message)));
                const buttons = el('div', 'question-actions');
                const actions = Array.isArray(message.actions) ? message.actions : [];
                actions.forEach((action, index) => {
                    const button = /** @type {HTMLButtonElement} */ (el('button', index === 0 ? '' : 'secondary', String(action)));
                    button.type = 'button';
                    button.addEventListener('click', () => {
                        vscode.postMessage({ type: 'answer', id: String(message.id), action: String(action) });
                    });
                    buttons.appendChild(button);
                });
                box.appendChild(buttons);
                currentTurn().appendChild(box);
                break;
            }
            case 'questionClosed': {
                const box = transcript.querySelector(`.question[data-id="${CSS.escape(String(message.id))}"]`);
                if (box) {
                    box.querySelectorAll('button').forEach((button) => (button.disabled = true));
                    box.appendChild(
                        el('div', 'question-answer', message.answer === null ? 'Not answered: the call was refused' : `→ ${message.answer}`),
                    );
                }
                break;
            }
            case 'done':
                currentTurn().appendChild(el('div', 'footer', String(message.footer)));
                break;
            case 'stopped':
                currentTurn().appendChild(el('div', 'footer', 'Stopped.'));
                break;
            case 'error':
                currentTurn().appendChild(el('div', 'error-message', `Error: ${String(message.message)}`));
                break;
            case 'busy':
                setBusy(Boolean(message.busy));
                break;
            case 'cleared':
                transcript.replaceChildren();
                turn = undefined;
                answer = undefined;
                calls.clear();
                break;
        }
        scroll();
    }

    window.addEventListener('message', (event) => {
        const message = event.data;
        if (message && typeof message === 'object' && typeof message.type === 'string') {
            receive(message);
        }
    });

    form.addEventListener('submit', (event) => {
        event.preventDefault();
        const text = prompt.value;
        if (!text.trim() || send.disabled) {
            return;
        }
        vscode.postMessage({ type: 'prompt', text });
        prompt.value = '';
    });
    prompt.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !event.shiftKey) {
            event.preventDefault();
            form.requestSubmit();
        }
    });
    stop.addEventListener('click', () => vscode.postMessage({ type: 'stop' }));
    newChat.addEventListener('click', () => vscode.postMessage({ type: 'newChat' }));

    setBusy(false);
    vscode.postMessage({ type: 'ready' });
    prompt.focus();
})();
